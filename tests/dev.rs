//! `weir dev`: the embedded mode streams, resumes and serves the demo page
//! and client with no NATS and no Redis.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_dev_streams_and_serves_the_demo_page() {
    let dir = scratch("dev");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["dev", "--listen", &format!("127.0.0.1:{port}")]);
    let proc = Proc::spawn_logged("weir-dev", cmd, dir.join("dev.log"));
    let node = Node {
        proc,
        port,
        id: "dev".into(),
    };
    wait_http_ok(&format!("{}/readyz", node.http()));

    let page = http().get(node.http()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("weir-client.js"));
    let js = http()
        .get(format!("{}/weir-client.js", node.http()))
        .send()
        .await
        .unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        js.text().await.unwrap(),
        include_str!("../clients/js/weir-client.js")
    );
    // Every module of the client is served: one left out breaks the page's import.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js/weir-client");
    for file in std::fs::read_dir(dir).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        assert!(
            weir_edge::api::CLIENT_MODULES
                .iter()
                .any(|(m, _)| *m == name),
            "clients/js/weir-client/{name} is not in CLIENT_MODULES"
        );
    }
    for (module, source) in weir_edge::api::CLIENT_MODULES {
        let served = http()
            .get(format!("{}/weir-client/{module}", node.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200, "{module}");
        assert_eq!(served.text().await.unwrap(), source, "{module}");
    }
    // The operator page's script and style.
    for (asset, kind, source) in weir_edge::api::OPS_ASSETS {
        let served = http()
            .get(format!("{}/ops/{asset}", node.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200, "{asset}");
        assert_eq!(served.headers()["content-type"], kind, "{asset}");
        assert_eq!(served.text().await.unwrap(), source, "{asset}");
    }
    let page = http()
        .get(format!("{}/ops", node.http()))
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    for (asset, _, _) in weir_edge::api::OPS_ASSETS {
        assert!(
            page.contains(&format!("\"ops/{asset}\"")),
            "/ops does not load {asset}"
        );
    }
    let missing = http()
        .get(format!("{}/ops/nope.js", node.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing = http()
        .get(format!("{}/weir-client/nope.js", node.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let s = create_mock(&node, 150, 300.0, 4).await;
    let mut ws = ws_connect(&node, &s.id, &s.token, 0).await;
    let first = read(&mut ws, Stop::After(40), Duration::from_secs(30)).await;
    drop(ws);
    let (rest, _) =
        read_resuming_from(&[&node], &s, first.last_seq(), Duration::from_secs(30)).await;
    let all: Vec<_> = first.events.into_iter().chain(rest).collect();
    assert_complete(&all, "completed");
    assert_eq!(all, history(&node, &s).await);
    assert_eq!(state(&node, &s).await["status"], "completed");
}
