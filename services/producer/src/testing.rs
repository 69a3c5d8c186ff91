//! Unit-test helpers: a store that can be taken down like Redis in an
//! outage, and a worker context over the in-memory bus.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use weir_bus::{Bus, BusConfig};
use weir_protocol::{ControlOp, SessionId, ThreadId};
use weir_store::{
    MemoryStore, RunRecord, SessionState, SessionStore, Started, StoreError, Thread, ThreadRecord,
    ThreadStore, Update,
};

use crate::{Ctx, ProducerConfig, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Every operation fails at once (a refused connection).
    Down,
    /// Every operation waits until the store is up or down again (a hung server).
    Hung,
}

/// A memory store whose reachability a test controls; its state survives
/// the outage.
pub struct Flaky {
    inner: MemoryStore,
    mode: watch::Sender<Mode>,
    up_since: Mutex<Option<Instant>>,
    /// State updates that reached the store.
    pub updates: std::sync::atomic::AtomicU64,
}

impl Flaky {
    pub fn new() -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: MemoryStore::new(Duration::from_secs(60)),
            mode: watch::Sender::new(Mode::Up),
            // Up for long enough that reapers trust leases from the start.
            up_since: Mutex::new(Instant::now().checked_sub(Duration::from_secs(60))),
            updates: Default::default(),
        })
    }

    pub fn set(&self, mode: Mode) {
        let mut up = self.up_since.lock().unwrap();
        *up = match mode {
            Mode::Up => up.or(Some(Instant::now())),
            _ => None,
        };
        self.mode.send_replace(mode);
    }

    async fn check(&self) -> Result<(), StoreError> {
        let mut mode = self.mode.subscribe();
        loop {
            match *mode.borrow_and_update() {
                Mode::Up => return Ok(()),
                Mode::Down => return Err(StoreError::Unavailable("test outage".into())),
                Mode::Hung => {}
            }
            if mode.changed().await.is_err() {
                return Err(StoreError::Unavailable("store dropped".into()));
            }
        }
    }
}

#[async_trait]
impl SessionStore for Flaky {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        self.check().await?;
        self.inner.create(state).await
    }
    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        self.check().await?;
        self.inner.get(id).await
    }
    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError> {
        self.check().await?;
        self.updates
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.update(id, update).await
    }
    async fn list(
        &self,
        status: Option<weir_protocol::Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<weir_store::Page, StoreError> {
        self.check().await?;
        self.inner.list(status, limit, cursor).await
    }
    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError> {
        self.check().await?;
        self.inner.ack(id, seq).await
    }
    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        self.check().await?;
        self.inner.request_control(id, op).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check().await
    }
    fn up_since(&self) -> Option<Instant> {
        *self.up_since.lock().unwrap()
    }
}

#[async_trait]
impl ThreadStore for Flaky {
    async fn create_thread(&self, thread: &Thread) -> Result<bool, StoreError> {
        self.check().await?;
        self.inner.create_thread(thread).await
    }
    async fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StoreError> {
        self.check().await?;
        self.inner.get_thread(id).await
    }
    async fn start_run(
        &self,
        thread: &ThreadId,
        after: Option<&SessionId>,
        run: &RunRecord,
        alias: Option<&str>,
    ) -> Result<Started, StoreError> {
        self.check().await?;
        self.inner.start_run(thread, after, run, alias).await
    }
    async fn withdraw_run(&self, thread: &ThreadId, run: &SessionId) -> Result<bool, StoreError> {
        self.check().await?;
        self.inner.withdraw_run(thread, run).await
    }
    async fn get_run(
        &self,
        thread: &ThreadId,
        run: &SessionId,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.check().await?;
        self.inner.get_run(thread, run).await
    }
    async fn add_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
        run: &SessionId,
    ) -> Result<bool, StoreError> {
        self.check().await?;
        self.inner.add_alias(thread, alias, run).await
    }
    async fn find_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
    ) -> Result<Option<SessionId>, StoreError> {
        self.check().await?;
        self.inner.find_alias(thread, alias).await
    }
}

/// A worker `node` over `bus` and `store`, with short leases.
pub fn ctx(node: &str, bus: &Bus, store: Arc<Flaky>, lease_ttl: Duration) -> Arc<Ctx> {
    let mut config = ProducerConfig::local();
    config.cluster.lease_ttl = lease_ttl;
    config.cluster.reap_interval = Duration::from_millis(50);
    config.cluster.node_id = Some(node.into());
    Arc::new(Ctx {
        bus: bus.clone(),
        store,
        agents: Registry::standard(&config),
        node: node.into(),
        config,
        started: std::time::Instant::now(),
        running: Default::default(),
    })
}

pub fn memory_bus() -> Bus {
    Bus::memory(BusConfig::default())
}

pub fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}
