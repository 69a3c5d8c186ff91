//! A decoder for `text/event-stream` bodies (server-sent events, as the
//! WHATWG HTML standard defines them), fed with whatever pieces the network
//! delivers: a piece may end anywhere, even between the CR and LF of a line
//! break or inside a UTF-8 sequence. Lines end in LF, CRLF or CR. Only `data`
//! fields matter to the agents; `event`, `id`, `retry` and comments are
//! skipped. What it holds is bounded: an event longer than the limit is an
//! error, not a reason to buffer the body.

/// An event (or a line) over the configured limit.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("an event of more than {0} bytes")]
pub struct TooLarge(pub usize);

pub struct SseDecoder {
    /// The line being read, without its line break.
    line: Vec<u8>,
    /// The data of the event being assembled, one `\n` after each `data` line.
    data: String,
    /// The last piece ended with CR: an LF at the start of the next is part of that break.
    after_cr: bool,
    /// Whether the first line (which may begin with a byte order mark) was read.
    started: bool,
    max_event_bytes: usize,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            data: String::new(),
            after_cr: false,
            started: false,
            max_event_bytes,
        }
    }

    /// Reads one piece of the body; pushes the data of each event it completes.
    pub fn push(&mut self, mut bytes: &[u8], events: &mut Vec<String>) -> Result<(), TooLarge> {
        while let Some((&first, rest)) = bytes.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                bytes = rest;
                continue;
            }
            let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.line.extend_from_slice(bytes);
                return self.check_size();
            };
            self.line.extend_from_slice(&bytes[..end]);
            self.check_size()?;
            self.after_cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            self.end_line(events);
        }
        Ok(())
    }

    /// At the end of the body: the event in progress, if the server did not
    /// close it with a blank line (the standard drops it; LLM servers that
    /// forget the last blank line are more common than truncated events).
    pub fn finish(&mut self) -> Option<String> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut events);
        }
        self.end_line(&mut events);
        events.pop()
    }

    fn check_size(&self) -> Result<(), TooLarge> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            return Err(TooLarge(self.max_event_bytes));
        }
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<String>) {
        let mut line = self.line.as_slice();
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            if !self.data.is_empty() {
                let mut data = std::mem::take(&mut self.data);
                data.pop();
                events.push(data);
            }
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (
                    &line[..i],
                    line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]),
                ),
                None => (line, &b""[..]),
            };
            if field == b"data" {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], size: usize) -> Vec<String> {
        let mut decoder = SseDecoder::new(1 << 16);
        let mut events = Vec::new();
        for piece in body.chunks(size) {
            decoder.push(piece, &mut events).unwrap();
        }
        events.extend(decoder.finish());
        events
    }

    #[test]
    fn any_split_of_the_body_gives_the_same_events() {
        let body = "\u{feff}: keep-alive\r\n\r\ndata: {\"t\":\"Grüße 👋\"}\r\n\r\n\
                    event: ignored\nid: 7\ndata:no space\ndata:  two spaces\n\n\
                    retry: 10\r\r:comment\rdata\r\rdata: [DONE]\n\n";
        let want = vec![
            "{\"t\":\"Grüße 👋\"}".to_owned(),
            "no space\n two spaces".to_owned(),
            String::new(),
            "[DONE]".to_owned(),
        ];
        for size in 1..=body.len() {
            assert_eq!(
                decode_in_pieces(body.as_bytes(), size),
                want,
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_kept() {
        assert_eq!(decode_in_pieces(b"data: a\n\ndata: b", 3), ["a", "b"]);
        assert_eq!(decode_in_pieces(b"data: a\n\ndata: b\n", 3), ["a", "b"]);
        assert_eq!(decode_in_pieces(b"data: a\n\n: bye", 3), ["a"]);
    }

    #[test]
    fn a_cr_at_the_end_of_a_piece_is_one_line_break_with_the_next_lf() {
        let mut decoder = SseDecoder::new(100);
        let mut events = Vec::new();
        decoder.push(b"data: a\r", &mut events).unwrap();
        decoder.push(b"\n", &mut events).unwrap();
        assert!(events.is_empty(), "CRLF split in two is not a blank line");
        decoder.push(b"\r", &mut events).unwrap();
        decoder.push(b"", &mut events).unwrap();
        decoder.push(b"\n", &mut events).unwrap();
        assert_eq!(events, ["a"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(decode_in_pieces(b"data: a\xFFb\n\n", 2), ["a\u{fffd}b"]);
    }

    #[test]
    fn an_oversized_event_is_refused() {
        let mut decoder = SseDecoder::new(16);
        let mut events = Vec::new();
        decoder.push(b"data: 0123456789\n", &mut events).unwrap();
        assert_eq!(
            decoder.push(b"data: 0123456789\n", &mut events),
            Err(TooLarge(16))
        );
        let mut decoder = SseDecoder::new(16);
        assert_eq!(decoder.push(&[b'x'; 17], &mut events), Err(TooLarge(16)));
    }
}
