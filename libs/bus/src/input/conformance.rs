//! The answer box's part of the bus conformance suite
//! ([`crate::conformance::all`] runs it on both implementations).

use std::time::Duration;

use serde_json::json;
use weir_protocol::{RequestId, SessionId};

use super::{AnswerData, Put};
use crate::Bus;

fn answer(text: &str) -> AnswerData {
    let mut data = AnswerData::new();
    data.insert("text".into(), json!(text));
    data
}

/// The first answer wins and a second is refused; an answer recorded before
/// the wait is delivered at once, one recorded during it wakes it; answers
/// to other requests and sessions are kept apart.
pub async fn answers_are_kept_once_and_delivered_to_a_later_wait(bus: &Bus, prefix: &str) {
    let s = SessionId::parse(&format!("{prefix}ask")).expect("test session id");
    let other = SessionId::parse(&format!("{prefix}ask-other")).expect("test session id");
    let (early, late) = (
        RequestId::parse("ask_1").unwrap(),
        RequestId::parse("ask_2").unwrap(),
    );
    let inputs = &bus.inputs;
    assert_eq!(inputs.get(&s, &early).await.unwrap(), None);
    assert_eq!(
        inputs.put(&s, &early, &answer("first")).await.unwrap(),
        Put::Stored
    );
    assert_eq!(
        inputs.put(&s, &early, &answer("second")).await.unwrap(),
        Put::AlreadyAnswered
    );
    assert_eq!(inputs.get(&s, &early).await.unwrap(), Some(answer("first")));
    assert_eq!(inputs.get(&other, &early).await.unwrap(), None);
    // Recorded before anyone waited: kept, and delivered.
    let got = tokio::time::timeout(Duration::from_secs(10), inputs.wait(&s, &early))
        .await
        .expect("a recorded answer is delivered at once")
        .unwrap();
    assert_eq!(got, answer("first"));
    // Recorded while someone waits: wakes the wait.
    let waiting = {
        let (inputs, s, late) = (inputs.clone(), s.clone(), late.clone());
        tokio::spawn(async move { inputs.wait(&s, &late).await })
    };
    // The wait is not answered by another request's or session's answer.
    inputs
        .put(&other, &late, &answer("elsewhere"))
        .await
        .unwrap();
    inputs.put(&s, &late, &answer("later")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ends once the answer is recorded")
        .unwrap()
        .unwrap();
    assert_eq!(got, answer("later"));
}
