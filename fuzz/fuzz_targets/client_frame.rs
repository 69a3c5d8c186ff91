//! Client → server WebSocket text frames, as the edge parses them
//! (`ClientFrame::parse`, called by the edge's connection loop): any text
//! is a frame or an error the client can be told in an `error` frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::{ClientFrame, ServerFrame};

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is UTF-8 (tungstenite checks it before the edge sees it).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let again = serde_json::to_string(&frame).expect("a frame serialises");
            assert_eq!(ClientFrame::parse(&again), Ok(frame));
        }
        Err(message) => {
            let json = ServerFrame::error("bad_request", message.clone()).to_json();
            let back: ServerFrame = serde_json::from_str(&json).expect("the error frame is JSON");
            assert_eq!(back, ServerFrame::error("bad_request", message));
        }
    }
});
