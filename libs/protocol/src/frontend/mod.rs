//! Conversations as the front-end protocols send them, converted to the
//! chat messages and tools a thread's run takes (protocol.md §9): the AI
//! SDK's UI messages ([`ui`]) and AG-UI's messages and tools ([`ag_ui`]),
//! and a run's input back as AG-UI messages. Pure functions of JSON; a
//! malformed message is refused with a message that names the field (the
//! edge answers it as a 400).

mod ag_ui;
mod ui;

pub use ag_ui::{ag_ui_to_chat, ag_ui_tools, chat_to_ag_ui};
pub use ui::ui_to_chat;

use serde_json::Value;

/// Why a conversation was refused: `<field>: <what is wrong>`.
pub type Invalid = String;

fn invalid(field: &str, what: &str) -> Invalid {
    format!("{field}: {what}")
}

/// A string field of `object`, or refused naming it.
fn text_field<'a>(object: &'a Value, at: &str, name: &str) -> Result<&'a str, Invalid> {
    object[name]
        .as_str()
        .ok_or_else(|| invalid(&format!("{at}.{name}"), "must be a string"))
}
