//! NATS server config files (`deploy/nats/`): checked by the pinned
//! `nats-server -t`, and read into JSON for the checks it cannot make
//! (names, routes, ports against `docker-compose.yml`).
//!
//! The reader knows the part of the format the configs use: `key: value`
//! (or `=`, or a space), `{ … }` maps, `[ … ]` lists separated by commas or
//! newlines, quoted and bare scalars, `#` and `//` comments. Anything else
//! (`include`, `$variables`) makes it panic rather than guess; scalars stay
//! strings.

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value};

use super::nats_server_bin;

/// `nats-server -t -c <file>`: the server's own verdict on the file. It
/// prints `configuration file … is valid` and exits 0, or names the bad line
/// and exits 1 (an unknown field, a lame duck duration under 30 s, …).
pub fn nats_server_accepts(file: &Path) -> Result<(), String> {
    let out = Command::new(nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nats-server: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.contains("is valid") {
        Ok(())
    } else {
        Err(said.trim().to_owned())
    }
}

/// The config as a JSON object.
pub fn read_nats_conf(src: &str) -> Value {
    let mut r = Reader {
        s: src.as_bytes(),
        i: 0,
    };
    let top = r.entries(None);
    r.blank();
    assert!(r.i == r.s.len(), "{}: unexpected text", r.at());
    Value::Object(top)
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn at(&self) -> String {
        let line = self.s[..self.i].iter().filter(|c| **c == b'\n').count() + 1;
        format!("NATS config line {line}")
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips spaces, comments and (with `newlines`) line ends and commas.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == b'#' || self.s[self.i..].starts_with(b"//") {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.i += 1;
                }
            } else if matches!(c, b' ' | b'\t' | b'\r')
                || (newlines && matches!(c, b'\n' | b',' | b';'))
            {
                self.i += 1;
            } else {
                return;
            }
        }
    }

    fn blank(&mut self) {
        self.skip(true);
    }

    /// Map entries up to `close` (or the end of the file).
    fn entries(&mut self, close: Option<u8>) -> Map<String, Value> {
        let mut m = Map::new();
        loop {
            self.blank();
            match self.peek() {
                None if close.is_none() => return m,
                None => panic!("{}: unclosed map", self.at()),
                Some(c) if Some(c) == close => {
                    self.i += 1;
                    return m;
                }
                _ => {}
            }
            let key = self.word();
            assert!(key != "include", "{}: include is not supported", self.at());
            self.skip(false);
            if matches!(self.peek(), Some(b':' | b'=')) {
                self.i += 1;
                self.skip(false);
            }
            let v = self.value();
            assert!(
                m.insert(key.clone(), v).is_none(),
                "{}: {key} set twice",
                self.at()
            );
        }
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        {
            self.i += 1;
        }
        assert!(self.i > start, "{}: expected a key", self.at());
        String::from_utf8(self.s[start..self.i].to_vec()).unwrap()
    }

    fn value(&mut self) -> Value {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                Value::Object(self.entries(Some(b'}')))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.blank();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Value::Array(items);
                    }
                    assert!(self.peek().is_some(), "{}: unclosed list", self.at());
                    items.push(self.value());
                }
            }
            Some(q @ (b'"' | b'\'')) => {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|c| c != q) {
                    self.i += 1;
                }
                assert!(self.peek().is_some(), "{}: unclosed string", self.at());
                self.i += 1;
                Value::String(String::from_utf8(self.s[start..self.i - 1].to_vec()).unwrap())
            }
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b'\n' | b',' | b';' | b'}' | b']' | b'#'))
                {
                    self.i += 1;
                }
                let v = std::str::from_utf8(&self.s[start..self.i]).unwrap().trim();
                assert!(!v.is_empty(), "{}: expected a value", self.at());
                assert!(
                    !v.starts_with('$'),
                    "{}: variables ({v}) are not supported",
                    self.at()
                );
                Value::String(v.to_owned())
            }
        }
    }
}

/// [`read_nats_conf`]'s JSON back in NATS syntax (scalars bare), e.g. a
/// compose config with this machine's ports and directories.
pub fn write_nats_conf(conf: &Value) -> String {
    fn value(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push_str("{\n");
                entries(m, out);
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    value(item, out);
                }
                out.push(']');
            }
            Value::String(s) => out.push_str(s),
            other => panic!("not from read_nats_conf: {other}"),
        }
    }
    fn entries(m: &Map<String, Value>, out: &mut String) {
        for (k, v) in m {
            out.push_str(k);
            out.push_str(": ");
            value(v, out);
            out.push('\n');
        }
    }
    let mut out = String::new();
    entries(conf.as_object().expect("a config is a map"), &mut out);
    out
}
