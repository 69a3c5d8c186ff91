//! The HTTP contract, machine-checked: the OpenAPI document
//! (services/edge/openapi.json, served at `GET /openapi.json`) has exactly
//! the router's routes and methods, and schemathesis, generating requests
//! from it against a live edge on NATS and Redis, finds no 5xx and no
//! response the document does not allow.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use weir_bus::{Bus, BusConfig};
use weir_edge::EdgeConfig;
use weir_store::MemoryStore;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn document() -> Value {
    serde_json::from_str(weir_edge::api::OPENAPI).expect("openapi.json is JSON")
}

/// An embedded edge (in-memory bus and store) on a free port, served by the
/// same `run` as the binary.
async fn embedded_edge() -> (String, CancellationToken) {
    let config = EdgeConfig::local(SECRET);
    let bus = Bus::memory(BusConfig::default());
    let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move { weir_edge::run(config, bus, store, listener, stop).await });
    (base, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_exactly_the_routes_and_methods_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let config = EdgeConfig::local(SECRET);
    let routes = weir_edge::routes(&config);
    let served: BTreeSet<&str> = routes.iter().map(|(path, _)| *path).collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "routes the document lacks"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "documented paths the router does not have"
    );

    // Methods: the router answers each documented one (whatever the status,
    // not its 405 fallback) and refuses every other with 405.
    let (base, shutdown) = embedded_edge().await;
    wait_http_ok(&format!("{base}/healthz"));
    let client = http();
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{id}", "some-session"));
        for method in METHODS {
            let documented = item.get(method.to_lowercase()).is_some();
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = client.request(m, &url).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = &body["error"]["code"];
            if documented {
                assert_ne!(status, 405, "{method} {path} is documented: {body}");
                let no_route = code == "not_found"
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no route"));
                assert!(!no_route, "{method} {path} is documented: {body}");
            } else {
                assert_eq!(
                    (status, code),
                    (405, &json!("method_not_allowed")),
                    "{method} {path} is not documented"
                );
            }
        }
    }
    let served: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, doc);
    shutdown.cancel();
}

/// The schemathesis CLI that scripts/setup.sh installs.
fn schemathesis() -> PathBuf {
    let st = std::env::var_os("WEIR_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| files::root().join(".tools/schemathesis/bin/st"));
    assert!(
        st.exists(),
        "{} is missing: run scripts/setup.sh (or set WEIR_SCHEMATHESIS)",
        st.display()
    );
    st
}

const API_KEY: &str = "schemathesis-api-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let st = schemathesis();
    let mut c = Cluster::start_with("schemathesis", 1, 1, &["--api-key", API_KEY], &[]);
    let edge = c.edge(0);
    // One complete session, so that its streams end at once; then no
    // producer, so that the sessions schemathesis creates stay queued
    // instead of loading the machine.
    let s = create_with_key(
        edge,
        json!({"agent": "mock", "input": {"tokens": 5, "rate": 0}}),
        Some(API_KEY),
    )
    .await;
    wait_ended(edge, &s, Duration::from_secs(30)).await;
    c.producers[0].proc.kill9();
    let config = c.dir.join("schemathesis.toml");
    let toml = format!(
        r#"
[auth.openapi]
apiKey = {{ bearer = "{API_KEY}" }}
sessionToken = {{ bearer = "{token}" }}
sessionTokenQuery = {{ api_key = "{token}" }}

[parameters]
"path.id" = "{id}"
"#,
        token = s.token,
        id = s.id
    );
    std::fs::write(&config, toml).unwrap();
    let url = format!("{}/openapi.json", c.edge(0).http());
    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &url])
        // Every check but the two that judge whether data the schema
        // allows was accepted and data it forbids refused: they count rules
        // no schema can say (an unknown agent, `after` past the log's end)
        // as failures. Array bodies and non-ASCII `Last-Event-ID`s, which
        // they also found, are refused (tests/bad_input.rs).
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "negative_data_rejection,positive_data_acceptance",
        ])
        .args(["--max-examples", "50", "--request-timeout", "10"])
        .args(["--seed", "1", "--no-color"])
        .current_dir(&c.dir)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("schemathesis ran for over 5 minutes")
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures");
}
