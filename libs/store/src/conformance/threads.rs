//! The behaviour every [`ThreadStore`] must have (protocol.md §9): a thread
//! keeps its runs in order, a run starts only after the run its caller
//! checked (one winner of two starts at once), a withdrawn run frees the
//! thread, and aliases name one run each.

use serde_json::json;
use weir_protocol::{SessionId, ThreadId};

use crate::thread::{RunRecord, Started, Thread, ThreadStore};

fn thread_id(prefix: &str, name: &str) -> ThreadId {
    ThreadId::parse(&format!("{prefix}{name}")).expect("valid test id")
}

fn session(prefix: &str, name: &str) -> SessionId {
    SessionId::parse(&format!("{prefix}{name}")).expect("valid test id")
}

fn run(session: &SessionId, created: u64, text: &str) -> RunRecord {
    RunRecord {
        session: session.clone(),
        created,
        messages: vec![json!({"role": "user", "content": text})],
        tools: vec![json!({"name": "weather"})],
        message_id: (text == "continue").then(|| "msg-1".to_owned()),
    }
}

/// Runs every thread check.
pub async fn all(store: &dyn ThreadStore, prefix: &str) {
    a_thread_keeps_its_runs_in_order(store, prefix).await;
    a_run_starts_only_after_the_run_its_caller_checked(store, prefix).await;
    a_withdrawn_run_frees_its_thread(store, prefix).await;
    an_alias_names_one_run_of_its_thread(store, prefix).await;
}

pub async fn a_thread_keeps_its_runs_in_order(store: &dyn ThreadStore, prefix: &str) {
    let id = thread_id(prefix, "order");
    assert!(store.get_thread(&id).await.unwrap().is_none());
    let mut input = serde_json::Map::new();
    input.insert("rate".into(), json!(50));
    let thread = Thread {
        id: id.clone(),
        agent: "mock".into(),
        input,
        created: 1_764_072_000_123,
    };
    assert!(store.create_thread(&thread).await.unwrap());
    assert!(
        !store.create_thread(&thread).await.unwrap(),
        "id taken twice"
    );
    let got = store.get_thread(&id).await.unwrap().unwrap();
    assert_eq!(got.thread, thread);
    assert!(got.runs.is_empty() && got.latest().is_none());
    let (a, b) = (session(prefix, "order-a"), session(prefix, "order-b"));
    let first = run(&a, 1_764_072_000_200, "hi");
    let second = run(&b, 1_764_072_000_300, "continue");
    assert_eq!(
        store.start_run(&id, None, &first, None).await.unwrap(),
        Started::Started
    );
    assert_eq!(
        store.start_run(&id, Some(&a), &second, None).await.unwrap(),
        Started::Started
    );
    let got = store.get_thread(&id).await.unwrap().unwrap();
    let runs: Vec<(SessionId, u64)> = got
        .runs
        .iter()
        .map(|r| (r.session.clone(), r.created))
        .collect();
    assert_eq!(
        runs,
        vec![(a.clone(), first.created), (b.clone(), second.created)]
    );
    assert_eq!(got.latest(), Some(&b));
    assert_eq!(store.get_run(&id, &a).await.unwrap(), Some(first));
    assert_eq!(store.get_run(&id, &b).await.unwrap(), Some(second));
    let other = thread_id(prefix, "order-other");
    assert_eq!(store.get_run(&other, &a).await.unwrap(), None);
}

pub async fn a_run_starts_only_after_the_run_its_caller_checked(
    store: &dyn ThreadStore,
    prefix: &str,
) {
    let id = thread_id(prefix, "cas");
    let (a, b, c) = (
        session(prefix, "cas-a"),
        session(prefix, "cas-b"),
        session(prefix, "cas-c"),
    );
    let missing = store.start_run(&id, None, &run(&a, 1, "x"), None).await;
    assert_eq!(missing.unwrap(), Started::NoThread);
    let thread = Thread {
        id: id.clone(),
        agent: "mock".into(),
        input: serde_json::Map::new(),
        created: 1,
    };
    store.create_thread(&thread).await.unwrap();
    store
        .start_run(&id, None, &run(&a, 2, "x"), None)
        .await
        .unwrap();
    // Two callers checked `a` ended; one wins, the other is told who did.
    let (run_b, run_c) = (run(&b, 3, "x"), run(&c, 3, "x"));
    let (one, two) = tokio::join!(
        store.start_run(&id, Some(&a), &run_b, None),
        store.start_run(&id, Some(&a), &run_c, None),
    );
    let outcomes = [one.unwrap(), two.unwrap()];
    let won: Vec<&Started> = outcomes
        .iter()
        .filter(|o| **o == Started::Started)
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let latest = store
        .get_thread(&id)
        .await
        .unwrap()
        .unwrap()
        .latest()
        .cloned();
    assert!(
        outcomes.contains(&Started::Moved(latest.clone())),
        "{outcomes:?}"
    );
    // A caller that expected no run at all is told the latest too.
    let late = store.start_run(&id, None, &run(&a, 4, "x"), None).await;
    assert_eq!(late.unwrap(), Started::Moved(latest));
    assert_eq!(store.get_thread(&id).await.unwrap().unwrap().runs.len(), 2);
}

pub async fn a_withdrawn_run_frees_its_thread(store: &dyn ThreadStore, prefix: &str) {
    let id = thread_id(prefix, "withdraw");
    let (a, b) = (session(prefix, "wd-a"), session(prefix, "wd-b"));
    let thread = Thread {
        id: id.clone(),
        agent: "mock".into(),
        input: serde_json::Map::new(),
        created: 1,
    };
    store.create_thread(&thread).await.unwrap();
    store
        .start_run(&id, None, &run(&a, 2, "x"), None)
        .await
        .unwrap();
    store
        .start_run(&id, Some(&a), &run(&b, 3, "x"), Some("client-b"))
        .await
        .unwrap();
    assert!(
        !store.withdraw_run(&id, &a).await.unwrap(),
        "not the latest"
    );
    assert!(store.withdraw_run(&id, &b).await.unwrap());
    let got = store.get_thread(&id).await.unwrap().unwrap();
    assert_eq!(got.latest(), Some(&a));
    assert_eq!(store.get_run(&id, &b).await.unwrap(), None);
    assert_eq!(store.find_alias(&id, "client-b").await.unwrap(), None);
    assert_eq!(
        store
            .start_run(&id, Some(&a), &run(&b, 4, "x"), None)
            .await
            .unwrap(),
        Started::Started
    );
}

pub async fn an_alias_names_one_run_of_its_thread(store: &dyn ThreadStore, prefix: &str) {
    let id = thread_id(prefix, "alias");
    let (a, b) = (session(prefix, "al-a"), session(prefix, "al-b"));
    let thread = Thread {
        id: id.clone(),
        agent: "mock".into(),
        input: serde_json::Map::new(),
        created: 1,
    };
    assert!(!store.add_alias(&id, "r0", &a).await.unwrap(), "no thread");
    store.create_thread(&thread).await.unwrap();
    store
        .start_run(&id, None, &run(&a, 2, "x"), Some("r1"))
        .await
        .unwrap();
    assert_eq!(store.find_alias(&id, "r1").await.unwrap(), Some(a.clone()));
    assert_eq!(store.find_alias(&id, "r2").await.unwrap(), None);
    // Several client run ids may name one run (AG-UI's resume).
    assert!(store.add_alias(&id, "r2", &a).await.unwrap());
    assert!(store.add_alias(&id, "r2", &a).await.unwrap(), "idempotent");
    assert_eq!(store.find_alias(&id, "r2").await.unwrap(), Some(a.clone()));
    // An alias names one run, and only a run of the thread.
    assert!(!store.add_alias(&id, "r3", &b).await.unwrap(), "not a run");
    store
        .start_run(&id, Some(&a), &run(&b, 3, "x"), None)
        .await
        .unwrap();
    assert!(!store.add_alias(&id, "r1", &b).await.unwrap(), "taken");
    assert_eq!(store.find_alias(&id, "r1").await.unwrap(), Some(a));
    let other = thread_id(prefix, "alias-other");
    assert_eq!(store.find_alias(&other, "r1").await.unwrap(), None);
}
