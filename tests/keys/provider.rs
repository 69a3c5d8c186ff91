//! The identity provider's side of tests/keys.rs: keys and tokens made by
//! PyJWT and cryptography (mint.py, as an application's back end or a
//! provider makes them), and the provider's JWK set served on loopback.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{AUDIENCE, ISSUER, NEW, OLD, OTHER, SESSION, STRANGER};

/// The Python that has PyJWT and cryptography: `WEIR_PYTHON`, or the venv
/// that scripts/setup.sh makes.
fn python() -> String {
    if let Ok(p) = std::env::var("WEIR_PYTHON") {
        return p;
    }
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/.venv/bin/python"
    );
    assert!(
        std::path::Path::new(venv).exists(),
        "no {venv}: run scripts/setup.sh (or set WEIR_PYTHON)"
    );
    venv.to_owned()
}

/// Fresh keys, their JWK sets and every token of the table (mint.py).
pub struct Minted {
    pub jwks: Value,
    pub jwks_later: Value,
    pub tokens: Value,
}

impl Minted {
    pub fn token(&self, name: &str) -> String {
        self.tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("mint.py made no token {name:?}"))
            .to_owned()
    }
}

pub fn mint() -> Minted {
    let spec = json!({"session": SESSION, "other": OTHER, "issuer": ISSUER, "audience": AUDIENCE,
                      "secrets": {"new": NEW, "old": OLD, "stranger": STRANGER}});
    let mut child = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/mint.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    serde_json::to_writer(child.stdin.take().unwrap(), &spec).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mint.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Minted {
        jwks: v["jwks"].clone(),
        jwks_later: v["jwks_later"].clone(),
        tokens: v["tokens"].clone(),
    }
}

/// An identity provider's JWK set endpoint on loopback: serves the set it
/// is given and counts the fetches.
#[derive(Clone)]
pub struct Provider {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    pub url: String,
}

impl Provider {
    pub fn new(port: u16, set: &Value) -> Provider {
        Provider {
            set: Arc::new(Mutex::new(set.clone())),
            fetches: Arc::new(AtomicUsize::new(0)),
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        }
    }

    pub async fn start(set: &Value) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Provider::new(listener.local_addr().unwrap().port(), set);
        p.serve(listener);
        p
    }

    pub fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    me.fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(me.set.lock().unwrap().clone())
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    pub fn publish(&self, set: &Value) {
        *self.set.lock().unwrap() = set.clone();
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
