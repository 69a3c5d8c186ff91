//! Threads (protocol.md §9): a conversation with one agent, whose runs are
//! sessions. Thread ids follow the session id rule; a thread token's `sub`
//! is `thread:<T>` (a session id cannot hold `:`, so no session token ever
//! names a thread). Messages and tools are checked here, once, for every
//! endpoint that starts a run: a malformed one is refused naming the field
//! (`messages[2].role`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::session::valid_id;

/// A thread id: `[A-Za-z0-9_-]{1,64}`, like a session id (it becomes a
/// Redis key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ThreadId(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("thread ids are 1 to 64 characters of A-Z a-z 0-9 _ -")]
pub struct ThreadIdError;

/// The prefix of a thread token's `sub`.
pub const THREAD_SUBJECT_PREFIX: &str = "thread:";

impl ThreadId {
    pub fn parse(s: &str) -> Result<ThreadId, ThreadIdError> {
        if valid_id(s) {
            Ok(ThreadId(s.to_owned()))
        } else {
            Err(ThreadIdError)
        }
    }

    /// A fresh random id (22 characters, like a session's).
    pub fn random() -> ThreadId {
        ThreadId(crate::SessionId::random().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `sub` of this thread's tokens: `thread:<T>`.
    pub fn subject(&self) -> String {
        format!("{THREAD_SUBJECT_PREFIX}{}", self.0)
    }

    /// The thread a token's `sub` names, if it is a thread token's.
    pub fn from_subject(sub: &str) -> Option<ThreadId> {
        sub.strip_prefix(THREAD_SUBJECT_PREFIX)
            .and_then(|t| ThreadId::parse(t).ok())
    }
}

impl TryFrom<String> for ThreadId {
    type Error = ThreadIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ThreadId::parse(&s)
    }
}

impl From<ThreadId> for String {
    fn from(id: ThreadId) -> String {
        id.0
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The roles of an OpenAI chat message.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Checks `messages` (OpenAI chat messages, §9): each an object with a
/// `role` of [`ROLES`], a string `content` (or `null` for an assistant
/// message that only calls tools), `tool_calls` of `{id, name, arguments}`
/// strings on assistant messages, a `tool_call_id` string on tool messages,
/// and an optional string `id`. The error names the field.
pub fn check_messages(messages: &[Value]) -> Result<(), String> {
    for (i, m) in messages.iter().enumerate() {
        check_message(m, &format!("messages[{i}]"))?;
    }
    Ok(())
}

fn check_message(m: &Value, at: &str) -> Result<(), String> {
    let m = m
        .as_object()
        .ok_or_else(|| format!("{at} must be an object"))?;
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.role must be one of {}", ROLES.join(", ")))?;
    if !ROLES.contains(&role) {
        return Err(format!(
            "{at}.role must be one of {}, not {role:?}",
            ROLES.join(", ")
        ));
    }
    let calls = m.get("tool_calls").filter(|c| !c.is_null());
    match m.get("content") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) if role == "assistant" && calls.is_some() => {}
        _ => return Err(format!("{at}.content must be a string")),
    }
    optional_string(m, "id", at)?;
    if let Some(calls) = calls {
        if role != "assistant" {
            return Err(format!("{at}.tool_calls is only for assistant messages"));
        }
        let calls = calls
            .as_array()
            .ok_or_else(|| format!("{at}.tool_calls must be an array"))?;
        for (j, c) in calls.iter().enumerate() {
            let at = format!("{at}.tool_calls[{j}]");
            let c = c
                .as_object()
                .ok_or_else(|| format!("{at} must be an object"))?;
            for field in ["id", "name", "arguments"] {
                if !c.get(field).is_some_and(Value::is_string) {
                    return Err(format!("{at}.{field} must be a string"));
                }
            }
        }
    }
    if role == "tool" {
        if !m.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(format!("{at}.tool_call_id must be a string"));
        }
    } else {
        optional_string(m, "tool_call_id", at)?;
    }
    Ok(())
}

fn optional_string(
    m: &serde_json::Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<(), String> {
    match m.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(format!("{at}.{field} must be a string")),
    }
}

/// Checks `tools` (§9): each `{"name", "description"?, "parameters"?}` with
/// a name of `[A-Za-z0-9_-]{1,64}` (what model APIs accept for a function),
/// a string description and an object (JSON Schema) as parameters; names
/// are unique. The error names the field.
pub fn check_tools(tools: &[Value]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let t = t
            .as_object()
            .ok_or_else(|| format!("{at} must be an object"))?;
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| valid_id(n))
            .ok_or_else(|| format!("{at}.name must be 1 to 64 characters of A-Z a-z 0-9 _ -"))?;
        if !names.insert(name) {
            return Err(format!("{at}.name {name:?} is used by another tool"));
        }
        optional_string(t, "description", &at)?;
        match t.get("parameters") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(format!("{at}.parameters must be an object (JSON Schema)")),
        }
        if let Some(extra) = t
            .keys()
            .find(|k| !["name", "description", "parameters"].contains(&k.as_str()))
        {
            return Err(format!("{at}.{extra} is not a tool field"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thread_ids_follow_the_session_id_rule_and_name_their_token_subject() {
        let t = ThreadId::parse("chat_1-A").unwrap();
        assert_eq!(t.subject(), "thread:chat_1-A");
        assert_eq!(ThreadId::from_subject("thread:chat_1-A"), Some(t));
        assert_eq!(ThreadId::from_subject("chat_1-A"), None);
        assert_eq!(ThreadId::from_subject("thread:a.b"), None);
        for bad in ["", "a:b", "a b", &"a".repeat(65)] {
            assert!(ThreadId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(ThreadId::random().as_str().len(), 22);
    }

    #[test]
    fn well_formed_messages_of_every_role_are_accepted() {
        let messages = [
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": "hi", "id": "m1"}),
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"id": "call_1", "name": "weather", "arguments": "{}"}]}),
            json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"}),
            json!({"role": "assistant", "content": "It is sunny."}),
        ];
        assert_eq!(check_messages(&messages), Ok(()));
    }

    #[test]
    fn a_malformed_message_is_refused_naming_its_field() {
        let ok = json!({"role": "user", "content": "hi"});
        let rows = [
            (json!("hi"), "messages[1] must be an object"),
            (json!({"content": "x"}), "messages[1].role"),
            (json!({"role": "robot", "content": "x"}), "messages[1].role"),
            (json!({"role": "user"}), "messages[1].content"),
            (json!({"role": "user", "content": 3}), "messages[1].content"),
            (
                json!({"role": "user", "content": "x", "id": 1}),
                "messages[1].id",
            ),
            (
                json!({"role": "tool", "content": "x"}),
                "messages[1].tool_call_id",
            ),
            (
                json!({"role": "user", "content": "x", "tool_calls": []}),
                "messages[1].tool_calls",
            ),
            (
                json!({"role": "assistant", "content": "x", "tool_calls": [{"id": "c", "name": "n"}]}),
                "messages[1].tool_calls[0].arguments",
            ),
        ];
        for (bad, field) in rows {
            let err = check_messages(&[ok.clone(), bad.clone()]).unwrap_err();
            assert!(
                err.starts_with(field),
                "{bad}: {err:?} does not name {field}"
            );
        }
    }

    #[test]
    fn a_malformed_tool_is_refused_naming_its_field() {
        let ok =
            json!({"name": "weather", "description": "today's", "parameters": {"type": "object"}});
        assert_eq!(check_tools(&[ok.clone(), json!({"name": "b"})]), Ok(()));
        let rows = [
            (json!(["x"]), "tools[1] must be an object"),
            (json!({"description": "x"}), "tools[1].name"),
            (json!({"name": "a b"}), "tools[1].name"),
            (
                json!({"name": "weather"}),
                "tools[1].name \"weather\" is used",
            ),
            (
                json!({"name": "b", "description": 1}),
                "tools[1].description",
            ),
            (
                json!({"name": "b", "parameters": "{}"}),
                "tools[1].parameters",
            ),
            (json!({"name": "b", "execute": true}), "tools[1].execute"),
        ];
        for (bad, field) in rows {
            let err = check_tools(&[ok.clone(), bad.clone()]).unwrap_err();
            assert!(
                err.starts_with(field),
                "{bad}: {err:?} does not name {field}"
            );
        }
    }
}
