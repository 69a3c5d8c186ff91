//! Connections to the three deployments, and what happens while one is away.
//!
//! - **One server** (`redis://`, `rediss://`): a [`ConnectionManager`].
//! - **Sentinel**: the master is looked up through the sentinels with the
//!   `redis` crate's [`SentinelClient`], which checks that the server it
//!   finds calls itself master; then a [`ConnectionManager`] to it. The crate
//!   does not follow `+switch-master`, and a connection manager reconnects to
//!   the address it was given, which after a failover is the old master
//!   (coming back empty, then demoted). So a connection that failed, or a
//!   server that answered `READONLY`, is never used again: the probe looks
//!   the master up anew and swaps the connection in.
//! - **Cluster**: the crate's [`ClusterConnection`], which routes each
//!   command by its keys' slot and follows the cluster's failovers itself.
//!
//! For all three, an error that says Redis cannot serve now marks the store
//! down ([`crate::health`]): operations fail at once while a probe, every
//! [`PROBE_EVERY`], makes a new connection and checks that what weir needs
//! answers — the master (`ROLE` does not say replica) for one server or
//! Sentinel, every bucket's slot for a cluster — and swaps it in.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisError, RedisResult, RetryMethod};

use super::keys::Bucket;
use super::url::{Auth, RedisUrl};
use crate::health::{self, Health};
use crate::StoreError;

/// How often an unreachable Redis is tried again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Longest a probe (a Sentinel lookup, a connection, its checks) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the store's connection managers connect, retry and time out.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1))
}

/// A connection to whichever deployment the URL named.
#[derive(Clone)]
pub(crate) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How a (new) connection is made.
enum Target {
    Single(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

impl Target {
    fn new(url: &RedisUrl) -> RedisResult<Target> {
        Ok(match url {
            RedisUrl::Single(url) => Target::Single(redis::Client::open(url.as_str())?),
            RedisUrl::Sentinel {
                sentinels,
                master,
                db,
                auth,
            } => {
                let addrs = sentinels
                    .iter()
                    .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
                let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
                    .set_client_to_redis_db(*db);
                if let Some(u) = &auth.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &auth.password {
                    b = b.set_client_to_redis_password(p);
                }
                Target::Sentinel(tokio::sync::Mutex::new(b.build()?))
            }
            RedisUrl::Cluster { nodes, auth } => Target::Cluster(cluster_client(nodes, auth)?),
        })
    }

    /// A new connection to the master (or the cluster), checked.
    async fn connect(&self) -> RedisResult<Conn> {
        let client = match self {
            Target::Single(client) => client.clone(),
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await?,
            Target::Cluster(client) => {
                let mut conn = Conn::Cluster(client.get_async_connection().await?);
                every_bucket_answers(&mut conn).await?;
                return Ok(conn);
            }
        };
        let mut conn =
            Conn::Server(ConnectionManager::new_with_config(client, connection_config()).await?);
        is_master(&mut conn).await?;
        Ok(conn)
    }
}

fn cluster_client(nodes: &[(String, u16)], auth: &Auth) -> RedisResult<ClusterClient> {
    let urls = nodes.iter().map(|(h, p)| {
        if h.contains(':') {
            format!("redis://[{h}]:{p}")
        } else {
            format!("redis://{h}:{p}")
        }
    });
    let mut b = ClusterClientBuilder::new(urls.collect::<Vec<_>>())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(2)
        .min_retry_wait(100)
        .max_retry_wait(500);
    if let Some(u) = &auth.username {
        b = b.username(u);
    }
    if let Some(p) = &auth.password {
        b = b.password(p);
    }
    b.build()
}

/// `ROLE` does not say the server is a replica: a demoted master is left.
/// A server that refuses `ROLE` itself (an ACL user without `@admin`, a
/// proxy in front of a managed Redis) is taken at its word: its writes
/// will say `READONLY` if it is a replica.
async fn is_master(conn: &mut Conn) -> RedisResult<()> {
    let role: Vec<redis::Value> = match redis::cmd("ROLE").query_async(conn).await {
        Ok(role) => role,
        Err(e) if !is_outage(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let name = match role.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    match name.as_str() {
        "slave" | "replica" => Err(RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "the server is a replica, not the master",
            format!("ROLE says {name:?}"),
        ))),
        "sentinel" => Err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "the server is a sentinel: use redis+sentinel://<sentinels>/<master name>",
        ))),
        _ => Ok(()),
    }
}

/// Every bucket's slot is served (its master answers).
async fn every_bucket_answers(conn: &mut Conn) -> RedisResult<()> {
    let checks = Bucket::all().map(|b| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(b.index(None))
                .query_async::<i64>(&mut conn)
                .await
        }
    });
    for r in futures::future::join_all(checks).await {
        r?;
    }
    Ok(())
}

/// What the store and its probe share.
pub(crate) struct Shared {
    target: Target,
    conn: RwLock<Conn>,
    health: Health,
}

impl Shared {
    /// Connects, and starts the probe that runs while Redis is away.
    pub(crate) async fn connect(url: &RedisUrl) -> Result<Arc<Shared>, StoreError> {
        let target = Target::new(url).map_err(StoreError::unavailable)?;
        let conn = tokio::time::timeout(PROBE_TIMEOUT * 2, target.connect())
            .await
            .map_err(|_| StoreError::unavailable("timed out connecting"))?
            .map_err(StoreError::unavailable)?;
        let shared = Arc::new(Shared {
            target,
            conn: RwLock::new(conn),
            health: Health::new(Instant::now()),
        });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(shared)
    }

    /// A connection to use, or a failure at once while Redis is down.
    pub(crate) fn admit(&self) -> Result<Conn, StoreError> {
        match self.health.down_since() {
            None => Ok(self.conn.read().expect("conn lock").clone()),
            Some(since) => Err(StoreError::unavailable(format!(
                "Redis unreachable for {:.1} s (not tried: waiting for the probe)",
                since.elapsed().as_secs_f64()
            ))),
        }
    }

    /// An operation's result, noting an outage.
    pub(crate) fn outcome<T>(&self, r: RedisResult<T>) -> Result<T, StoreError> {
        r.map_err(|e| {
            if is_outage(&e) {
                health::report(self.health.failed(Instant::now()), &e);
            }
            StoreError::unavailable(e)
        })
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// One probe: a new connection to the master (looked up again through
    /// the sentinels), or to the cluster (its topology read again) with
    /// every bucket answering. A new one, because the old one may be stuck
    /// on a dead node: measured, a cluster connection whose requests timed
    /// out during a failover kept failing after the cluster had healed.
    async fn try_again(&self) -> RedisResult<()> {
        let conn = self.target.connect().await?;
        *self.conn.write().expect("conn lock") = conn;
        Ok(())
    }
}

/// Errors that say Redis cannot be reached or cannot serve now — including
/// `READONLY` from a demoted master and a cluster's `CLUSTERDOWN` — as
/// opposed to an error in a script or a reply.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || matches!(
            e.retry_method(),
            RetryMethod::WaitAndRetry
                | RetryMethod::RetryImmediately
                | RetryMethod::RefreshSlotsAndRetry
                | RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
        )
}

/// Tries Redis every [`PROBE_EVERY`] while it is down, until the store is dropped.
async fn probe(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.health.is_up() {
            continue;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, shared.try_again()).await {
            Ok(Ok(())) => health::report(shared.health.probed_ok(Instant::now()), &"-"),
            Ok(Err(e)) => tracing::debug!(error = %e, "Redis still unreachable"),
            Err(_) => tracing::debug!("Redis probe timed out"),
        }
    }
}
