//! The one delivery path. Every transport — WebSocket, SSE, the AI SDK's UI
//! message stream, AG-UI — opens its subscription with [`subscribe`] and is
//! only an encoder over it: a connection slot (taken first, by [`admit`]),
//! the session's state and resume check against the log
//! ([`crate::sessions::open`]), the node's feed of the session, a
//! [`Subscription`] from `after` at the session's pace, and the operator
//! notices for it. Streams that answer as a `text/event-stream` body share
//! [`body`]'s pump, headers, heartbeats and drain; the WebSocket writes
//! through [`crate::websocket::connection`]. What reached a client is
//! counted by [`metrics::DeliveryMetrics`], the same for all.

pub mod body;
pub mod metrics;

use futures::stream::{BoxStream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use weir_protocol::SessionId;
use weir_store::SessionState;

use crate::error::ApiError;
use crate::sessions::{self, Resume};
use crate::subscription::Subscription;
use crate::{AppState, ConnectionGuard};

/// A subscription opened for one client, with what its transport needs.
pub struct Opened {
    pub id: SessionId,
    /// The last seq the client holds.
    pub after: u64,
    /// The session's state when it was opened.
    pub state: SessionState,
    /// The session's events after `after`, paced; `None` when the client
    /// already holds the whole session, `end` included.
    pub sub: Option<Subscription>,
    /// Operators' notices for this client (already encoded frames).
    pub notices: BoxStream<'static, String>,
    /// The client's connection slot, held as long as it is served.
    pub guard: ConnectionGuard,
    /// `transport` label of the delivery metrics.
    pub transport: &'static str,
}

/// A connection slot for a `transport` client, unless the node is at its
/// connection limit or draining: limits before any work is done for it.
pub fn admit(state: &AppState, transport: &'static str) -> Result<ConnectionGuard, ApiError> {
    ConnectionGuard::try_new(state, transport).ok_or_else(|| {
        ApiError::Unavailable("this node is at its connection limit or draining".into())
    })
}

/// Opens session `id` (already authorized) for a client holding seqs up to
/// `after`, in the slot [`admit`] gave it.
pub async fn subscribe(
    state: &AppState,
    guard: ConnectionGuard,
    transport: &'static str,
    id: SessionId,
    after: u64,
) -> Result<Opened, ApiError> {
    let (s, resume) = sessions::open(state, &id, after).await?;
    let sub = match resume {
        Resume::Complete => None,
        Resume::Stream => {
            let feed = state.hub.feed(&id).await;
            let sub = Subscription::new(id.clone(), feed, state.bus.log.clone(), after);
            Some(sub.paced(sessions::pace(state, &s)))
        }
    };
    let notices = notices_for(state, &id);
    Ok(Opened {
        id,
        after,
        state: s,
        sub,
        notices,
        guard,
        transport,
    })
}

/// The notice frames for one connection of `session`, encoded once per
/// notice and node. A connection that lags behind the backlog skips the
/// oldest.
fn notices_for(state: &AppState, session: &SessionId) -> BoxStream<'static, String> {
    let session = session.clone();
    BroadcastStream::new(state.notices.subscribe())
        .filter_map(move |n| {
            let keep = n
                .ok()
                .filter(|n| n.0.as_ref().is_none_or(|s| *s == session));
            futures::future::ready(keep.map(|n| n.1.clone()))
        })
        .boxed()
}
