//! End-to-end harness, by concern: [`processes`] (real `nats-server` and
//! `redis-server` on free ports, killed on drop), [`cluster`] (edges and
//! producers as real `weir` processes), [`embedded`] (an edge and a producer
//! in the test process on the memory bus), [`http_api`] (the HTTP API as a
//! client calls it) and [`websocket`] (WebSocket clients); the rest are the
//! deployment files' checks (compose, Helm, dashboards, …). Everything those
//! five export is re-exported here, so a test names it `common::x`.
#![allow(dead_code)]

pub mod chart;
pub mod cluster;
pub mod compose;
pub mod dockerfile;
pub mod embedded;
pub mod files;
pub mod helm;
pub mod hosts;
pub mod http_api;
pub mod metrics;
pub mod nats_cluster;
pub mod nats_conf;
pub mod netns;
pub mod pods;
pub mod processes;
pub mod prometheus;
pub mod queries;
pub mod redis_ha;
pub mod websocket;

// Each test binary uses some of them.
#[allow(unused_imports)]
pub use cluster::*;
#[allow(unused_imports)]
pub use embedded::*;
#[allow(unused_imports)]
pub use http_api::*;
#[allow(unused_imports)]
pub use processes::*;
#[allow(unused_imports)]
pub use websocket::*;

/// The edges' token secret (protocol.md §4: at least 32 bytes).
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef";
