//! The threads API the front ends call, on the memory bus and store.

use std::sync::Arc;

use serde_json::json;
use weir_bus::{Bus, BusConfig, Fence};
use weir_protocol::{EndReason, Event};
use weir_store::{MemoryStore, Thread};

use super::*;

async fn state_with_thread(name: &str) -> (AppState, ThreadId) {
    let bus = Bus::memory(BusConfig::default());
    let store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(60)));
    let config = crate::EdgeConfig::local("threads-unit-test-secret-of-32-bytes");
    let state = AppState::new(config, bus, store).unwrap();
    let id = ThreadId::parse(name).unwrap();
    let mut input = Map::new();
    input.insert("rate".into(), json!(5));
    let thread = Thread {
        id: id.clone(),
        agent: "mock".into(),
        input,
        created: 1,
    };
    assert!(state.store.create_thread(&thread).await.unwrap());
    (state, id)
}

fn turn(text: &str) -> RunStart {
    RunStart {
        messages: vec![json!({"role": "user", "content": text, "id": "u1"})],
        tools: vec![json!({"name": "weather"})],
        ..RunStart::default()
    }
}

async fn end(state: &AppState, run: &SessionId) {
    let end = Event::end(1, EndReason::Completed, None).to_raw();
    state.bus.log.append(run, &[end], Fence(0)).await.unwrap();
}

#[tokio::test]
async fn a_started_run_gets_the_threads_input_under_its_own_and_the_conversation() {
    let (state, t) = state_with_thread("input").await;
    let mut run = turn("hi");
    run.input.insert("seed".into(), json!(7));
    run.input.insert("rate".into(), json!(0));
    let started = start_run(&state, &t, run).await.unwrap();
    let queued = state.store.get(&started.session).await.unwrap().unwrap();
    assert_eq!(queued.thread.as_ref(), Some(&t));
    assert_eq!(queued.agent, "mock");
    let wait = std::time::Duration::from_secs(5);
    let mut tickets = state.bus.runs.take("mock", 1, wait).await.unwrap();
    let input = &tickets.remove(0).request.input;
    assert_eq!(input["rate"], 0, "the run's input wins");
    assert_eq!(input["seed"], 7);
    assert_eq!(input["messages"][0]["content"], "hi");
    assert_eq!(input["tools"][0]["name"], "weather");
    assert!(state
        .auth
        .keys
        .verify(&started.token, &started.session)
        .is_ok());
}

#[tokio::test]
async fn the_active_run_is_the_latest_until_its_log_ends_it() {
    let (state, t) = state_with_thread("active").await;
    assert_eq!(active_run(&state, &t).await.unwrap(), None);
    let first = start_run(&state, &t, turn("one")).await.unwrap().session;
    assert_eq!(active_run(&state, &t).await.unwrap(), Some(first.clone()));
    match start_run(&state, &t, turn("two")).await {
        Err(ApiError::RunActive(s)) => assert_eq!(s, first),
        other => panic!("{other:?}"),
    }
    end(&state, &first).await;
    assert_eq!(active_run(&state, &t).await.unwrap(), None);
    let second = start_run(&state, &t, turn("two")).await.unwrap().session;
    assert_ne!(second, first);
}

#[tokio::test]
async fn a_runs_spec_is_what_it_was_started_with() {
    let (state, t) = state_with_thread("spec").await;
    let mut run = turn("continue");
    run.message_id = Some("assistant-7".into());
    let s = start_run(&state, &t, run.clone()).await.unwrap().session;
    let spec = run_spec(&state, &s).await.unwrap().unwrap();
    assert_eq!(
        spec,
        RunSpec {
            thread: t,
            messages: run.messages,
            tools: run.tools,
            message_id: Some("assistant-7".into()),
        }
    );
    let alone = SessionId::parse("not-a-run").unwrap();
    state
        .store
        .create(&SessionState::new(alone.clone(), "mock"))
        .await
        .unwrap();
    assert_eq!(run_spec(&state, &alone).await.unwrap(), None);
}

#[tokio::test]
async fn client_run_ids_name_runs_and_one_names_only_one() {
    let (state, t) = state_with_thread("alias").await;
    let mut run = turn("hi");
    run.alias = Some("run-a".into());
    let a = start_run(&state, &t, run).await.unwrap().session;
    assert_eq!(
        find_alias(&state, &t, "run-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(find_alias(&state, &t, "run-b").await.unwrap(), None);
    add_alias(&state, &t, "run-b", &a).await.unwrap();
    assert_eq!(
        find_alias(&state, &t, "run-b").await.unwrap(),
        Some(a.clone())
    );
    end(&state, &a).await;
    let b = start_run(&state, &t, turn("again")).await.unwrap().session;
    assert!(matches!(
        add_alias(&state, &t, "run-a", &b).await,
        Err(ApiError::Conflict(_))
    ));
}

#[tokio::test]
async fn malformed_messages_name_the_field_and_start_nothing() {
    let (state, t) = state_with_thread("bad").await;
    let mut run = turn("hi");
    run.messages.push(json!({"role": "user", "content": 3}));
    match start_run(&state, &t, run).await {
        Err(ApiError::BadRequest(m)) => assert!(m.starts_with("messages[1].content"), "{m}"),
        other => panic!("{other:?}"),
    }
    let missing = ThreadId::parse("missing").unwrap();
    assert!(matches!(
        start_run(&state, &missing, turn("hi")).await,
        Err(ApiError::NoSuchThread)
    ));
    assert!(state
        .store
        .get_thread(&t)
        .await
        .unwrap()
        .unwrap()
        .runs
        .is_empty());
}
