//! Which of the cluster's other servers answer at all, asked just before
//! the watchdog leaves its server: a server greets every new connection
//! with its `INFO` line at once, before any authentication, so a TCP
//! connection that brings no `INFO` within [`ANSWERS_WITHIN`] is a host off
//! the network (its packets dropped, the connection hanging) or a frozen
//! process. Those are tried last: a node leaving a server whose stream is
//! electing must not move onto a host that is gone, where its next
//! connection would hang until the host came back (the flapping link of
//! issue 27 did exactly that).

use std::time::Duration;

use async_nats::ServerAddr;
use futures::future::join_all;
use tokio::io::AsyncReadExt;

/// A server on the same network sends its greeting within milliseconds;
/// this is long enough for a busy one across zones.
pub(super) const ANSWERS_WITHIN: Duration = Duration::from_millis(500);

/// The servers of `addrs` that sent no greeting within `within`; empty when
/// none did (then nothing tells them apart: this node may be the one cut
/// off). WebSocket servers are not asked (their greeting comes after an
/// HTTP upgrade), nor counted as silent.
pub(super) async fn silent(addrs: Vec<ServerAddr>, within: Duration) -> Vec<ServerAddr> {
    let asked: Vec<ServerAddr> = addrs.into_iter().filter(|a| !a.is_websocket()).collect();
    let answers = join_all(asked.iter().map(|a| greets(a, within))).await;
    if !answers.iter().any(|&greeted| greeted) {
        return Vec::new();
    }
    asked
        .into_iter()
        .zip(answers)
        .filter_map(|(addr, greeted)| (!greeted).then_some(addr))
        .collect()
}

/// Whether the server at `addr` greets a new connection within `within`.
async fn greets(addr: &ServerAddr, within: Duration) -> bool {
    let greeting = async {
        let mut conn = tokio::net::TcpStream::connect((addr.host(), addr.port())).await?;
        let mut first = [0u8; 4];
        conn.read_exact(&mut first).await?;
        Ok::<bool, std::io::Error>(first.eq_ignore_ascii_case(b"INFO"))
    };
    matches!(tokio::time::timeout(within, greeting).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A listener that greets like a NATS server, or accepts and says nothing.
    async fn server(greet: bool) -> (ServerAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                if greet {
                    conn.write_all(b"INFO {\"server_id\":\"x\"}\r\n")
                        .await
                        .unwrap();
                }
                held.push(conn);
            }
        });
        (format!("nats://127.0.0.1:{port}").parse().unwrap(), task)
    }

    /// A port nothing listens on (bound, then closed).
    async fn closed_port() -> ServerAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("nats://127.0.0.1:{port}").parse().unwrap()
    }

    #[tokio::test]
    async fn servers_that_accept_but_never_greet_or_refuse_are_silent() {
        let (greeting, _a) = server(true).await;
        let (mute, _b) = server(false).await;
        let refused = closed_port().await;
        let within = Duration::from_millis(300);
        let got = silent(vec![greeting, mute.clone(), refused.clone()], within).await;
        assert_eq!(got, vec![mute, refused]);
    }

    #[tokio::test]
    async fn when_no_server_greets_none_is_singled_out() {
        let (mute, _b) = server(false).await;
        let refused = closed_port().await;
        let within = Duration::from_millis(300);
        assert!(silent(vec![mute, refused], within).await.is_empty());
    }

    #[tokio::test]
    async fn websocket_servers_are_not_asked() {
        let (greeting, _a) = server(true).await;
        let ws: ServerAddr = "ws://127.0.0.1:1".parse().unwrap();
        let within = Duration::from_millis(300);
        assert!(silent(vec![greeting, ws], within).await.is_empty());
    }
}
