//! Answering a session's open `input_request` (protocol.md §9):
//! `POST /v1/sessions/{id}/input`, the WebSocket `input` frame and AG-UI's
//! `resume` all call [`answer`].
//!
//! The session's log says which requests are open: an `input_request` with
//! no `input` for it after it (other events may follow it: an outside
//! producer's other output, or several questions at once). The log is read
//! back from its end, at most [`LOOK_BACK`] events.
//! The answer is checked against the request's schema and recorded in the
//! bus's answer box ([`weir_bus::InputBox`]), where the producer that asked
//! takes it; the box keeps the first answer only, so two answers given at
//! once on two edges get one 202 and one 409.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use weir_bus::input::AnswerData;
use weir_bus::{EventLog, Put};
use weir_protocol::input::{schema_mismatches, INPUT, INPUT_REQUEST};
use weir_protocol::{AnswerBody, Event, InputRequest, RawEvent, RequestId, SessionId};

use crate::access::SessionAuth;
use crate::error::ApiError;
use crate::request::JsonObject;
use crate::AppState;

/// How far back from the log's end a request is looked for: one further
/// back is not found (404).
pub const LOOK_BACK: u64 = 4096;
/// Events read at a time when looking back.
const PAGE: u64 = 64;

/// `POST /v1/sessions/{id}/input`
pub async fn post(
    State(state): State<AppState>,
    SessionAuth(id): SessionAuth,
    body: Result<JsonObject<AnswerBody>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonObject(body) = body?;
    let request = body.request.clone();
    answer(&state, &id, &body.request, body.data).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "request": request })),
    ))
}

/// Records `data` as the answer to the session's open request `request`:
/// 400 when `data` is not an object or does not match the request's
/// schema, 404 when no such request is open, 409 when it was answered
/// already or the session ended.
pub(crate) async fn answer(
    state: &AppState,
    session: &SessionId,
    request: &str,
    data: Value,
) -> Result<(), ApiError> {
    let body = AnswerBody {
        request: request.to_owned(),
        data,
    };
    let (request, data) = body.check().map_err(ApiError::BadRequest)?;
    let inputs = &state.bus.inputs;
    match find(state.bus.log.as_ref(), session, &request).await? {
        Found::Ended => Err(ApiError::Conflict("the session has ended".into())),
        Found::Answered => Err(already_answered(&request)),
        Found::Open(open) => {
            check_schema(&open, &data)?;
            match inputs.put(session, &request, &data).await? {
                Put::Stored => Ok(()),
                Put::AlreadyAnswered => Err(already_answered(&request)),
            }
        }
        // Answered but not published yet, or never asked.
        Found::Nothing => match inputs.get(session, &request).await? {
            Some(_) => Err(already_answered(&request)),
            None => Err(ApiError::Missing(format!(
                "the session has no open input request {request}"
            ))),
        },
    }
}

fn already_answered(request: &RequestId) -> ApiError {
    ApiError::Conflict(format!("input request {request} was already answered"))
}

/// What the log says about one request.
#[derive(Debug)]
enum Found {
    /// Asked, and no `input` for it since.
    Open(InputRequest),
    /// Its `input` is in the log.
    Answered,
    /// Not within [`LOOK_BACK`] events of the log's end.
    Nothing,
    Ended,
}

/// Reads the log back from its end, a page at a time, to the `input` or
/// the `input_request` of `request`, whichever comes first.
async fn find(
    log: &dyn EventLog,
    session: &SessionId,
    request: &RequestId,
) -> Result<Found, ApiError> {
    let Some(last) = log.last(session).await? else {
        return Ok(Found::Nothing);
    };
    if last.event.end {
        return Ok(Found::Ended);
    }
    let floor = last.event.seq.saturating_sub(LOOK_BACK);
    let mut upto = last.event.seq;
    while upto > floor {
        let after = upto.saturating_sub(PAGE).max(floor);
        let mut reader = log.reader(session, after).await?;
        let mut window = Vec::new();
        while window.last().is_none_or(|e: &RawEvent| e.seq < upto) {
            let page = reader.next_page((upto - after) as usize).await?;
            if page.is_empty() {
                break;
            }
            window.extend(page.into_iter().filter(|e| e.seq <= upto));
        }
        for raw in window.iter().rev() {
            if let Some(found) = about(raw, request)? {
                return Ok(found);
            }
        }
        // The events before these expired.
        if window.first().is_none_or(|e| e.seq > after + 1) {
            break;
        }
        upto = after;
    }
    Ok(Found::Nothing)
}

/// What one event says about `request`, if anything.
fn about(raw: &RawEvent, request: &RequestId) -> Result<Option<Found>, ApiError> {
    let event: Event = serde_json::from_slice(&raw.json)
        .map_err(|e| ApiError::Unavailable(format!("unreadable event in the log: {e}")))?;
    Ok(match event.kind.as_str() {
        INPUT if event.data["request"] == request.as_str() => Some(Found::Answered),
        INPUT_REQUEST if event.data["id"] == request.as_str() => {
            serde_json::from_value(event.data).ok().map(Found::Open)
        }
        _ => None,
    })
}

/// Checks the answer against the request's JSON Schema. A schema that
/// cannot be compiled is the asking agent's mistake: it is not enforced
/// (refusing would leave the request unanswerable).
fn check_schema(request: &InputRequest, data: &AnswerData) -> Result<(), ApiError> {
    let Some(schema) = &request.schema else {
        return Ok(());
    };
    match schema_mismatches(schema, data) {
        Ok(problems) if problems.is_empty() => Ok(()),
        Ok(problems) => Err(ApiError::BadRequest(format!(
            "data does not match the request's schema: {}",
            problems.join("; ")
        ))),
        Err(e) => {
            tracing::warn!(request = %request.id, error = %e, "input request schema unusable; answer not checked");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use weir_bus::{Bus, BusConfig, Fence};
    use weir_protocol::EndReason;

    use super::*;

    /// An edge on the memory bus, and a session whose log holds `events`.
    async fn session_with(events: Vec<Event>) -> (AppState, SessionId) {
        let bus = Bus::memory(BusConfig::default());
        let store: Arc<dyn weir_store::SessionStore> = Arc::new(
            weir_store::memory::MemoryStore::new(std::time::Duration::from_secs(60)),
        );
        let id = SessionId::parse("asking").unwrap();
        if !events.is_empty() {
            let raw: Vec<_> = events.iter().map(Event::to_raw).collect();
            bus.log.append(&id, &raw, Fence(0)).await.unwrap();
        }
        let config = crate::EdgeConfig::local("inputs-test-secret-of-at-least-32-bytes");
        (AppState::new(config, bus, store).unwrap(), id)
    }

    fn token(seq: u64) -> Event {
        Event::new(seq, "token", None, json!({"text": "x"}))
    }

    fn ask(seq: u64, id: &str) -> Event {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        let data = json!({"id": id, "prompt": "name?", "schema": schema});
        Event::new(seq, INPUT_REQUEST, None, data)
    }

    fn notice(seq: u64, state: &str) -> Event {
        Event::new(seq, "status", None, json!({ "state": state }))
    }

    #[tokio::test]
    async fn the_open_request_is_answered_once_and_the_answer_recorded() {
        let (state, id) = session_with(vec![token(1), ask(2, "ask_2")]).await;
        answer(&state, &id, "ask_2", json!({"text": "Ada"}))
            .await
            .unwrap();
        let request = RequestId::parse("ask_2").unwrap();
        let kept = state.bus.inputs.get(&id, &request).await.unwrap().unwrap();
        assert_eq!(kept["text"], "Ada");
        let again = answer(&state, &id, "ask_2", json!({"text": "Bob"})).await;
        assert!(matches!(again, Err(ApiError::Conflict(_))), "{again:?}");
    }

    #[tokio::test]
    async fn a_request_stays_open_whatever_follows_it_but_its_answer() {
        let mut events = vec![token(1), ask(2, "ask_2"), ask(3, "ask_3")];
        // More events than one page: notices, another question's answer, output.
        for seq in 4..4 + 2 * PAGE {
            events.push(notice(seq, if seq % 2 == 1 { "paused" } else { "resumed" }));
        }
        let input = json!({"request": "ask_3", "data": {"text": "x"}});
        events.push(Event::new(4 + 2 * PAGE, INPUT, None, input));
        events.push(token(5 + 2 * PAGE));
        let (state, id) = session_with(events).await;
        answer(&state, &id, "ask_2", json!({"text": "Ada"}))
            .await
            .unwrap();
        let refused = answer(&state, &id, "ask_3", json!({"text": "Ada"})).await;
        assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn data_that_is_not_an_object_is_a_bad_request() {
        let (state, id) = session_with(vec![ask(1, "r1")]).await;
        for data in [json!("Ada"), json!(["Ada"]), Value::Null] {
            let refused = answer(&state, &id, "r1", data).await;
            assert!(
                matches!(refused, Err(ApiError::BadRequest(_))),
                "{refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn data_that_does_not_match_the_schema_is_a_bad_request_naming_the_problem() {
        let (state, id) = session_with(vec![ask(1, "r1")]).await;
        let Err(ApiError::BadRequest(m)) = answer(&state, &id, "r1", json!({"text": 7})).await
        else {
            panic!("a number accepted for a string")
        };
        assert!(m.contains("/text"), "{m}");
        let missing = answer(&state, &id, "r1", json!({"name": "Ada"})).await;
        assert!(
            matches!(missing, Err(ApiError::BadRequest(_))),
            "{missing:?}"
        );
        // Nothing was recorded: the right answer is still taken.
        answer(&state, &id, "r1", json!({"text": "Ada"}))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_request_id_that_cannot_exist_is_a_bad_request() {
        let (state, id) = session_with(vec![ask(1, "r1")]).await;
        let refused = answer(&state, &id, "r.1", json!({})).await;
        assert!(
            matches!(refused, Err(ApiError::BadRequest(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_request_is_not_found() {
        let (state, id) = session_with(vec![ask(1, "r1")]).await;
        let refused = answer(&state, &id, "r2", json!({})).await;
        assert!(matches!(refused, Err(ApiError::Missing(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn a_request_further_back_than_the_look_back_or_in_an_empty_log_is_not_found() {
        let mut events = vec![ask(1, "r1")];
        events.extend((2..=LOOK_BACK + 1).map(token));
        let (state, id) = session_with(events).await;
        let refused = answer(&state, &id, "r1", json!({})).await;
        assert!(matches!(refused, Err(ApiError::Missing(_))), "{refused:?}");
        let (state, id) = session_with(vec![]).await;
        let refused = answer(&state, &id, "r1", json!({})).await;
        assert!(matches!(refused, Err(ApiError::Missing(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn a_request_whose_answer_was_published_is_a_conflict() {
        let (state, id) = session_with(vec![ask(1, "r1")]).await;
        answer(&state, &id, "r1", json!({"text": "Ada"}))
            .await
            .unwrap();
        // The producer took it and published `input`: no request is open.
        let input = Event::new(
            2,
            "input",
            None,
            json!({"request": "r1", "data": {"text": "Ada"}}),
        );
        let last = state.bus.log.last(&id).await.unwrap().unwrap();
        state
            .bus
            .log
            .append(&id, &[input.to_raw()], last.fence)
            .await
            .unwrap();
        let refused = answer(&state, &id, "r1", json!({"text": "Bob"})).await;
        assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn an_answer_to_an_ended_session_is_a_conflict() {
        let (state, id) = session_with(vec![
            ask(1, "r1"),
            Event::end(2, EndReason::Cancelled, None),
        ])
        .await;
        let refused = answer(&state, &id, "r1", json!({"text": "Ada"})).await;
        assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    }
}
