//! `docker-compose.yml`, the `Dockerfile` and `.dockerignore`, nginx,
//! Prometheus, Grafana, the NATS cluster's configs (`deploy/nats/`, checked
//! by the pinned `nats-server -t`) and the Redis Sentinel profile agree with
//! each other and with what the binaries accept. There is no Docker engine
//! where weir is developed, so the stack is checked by construction, with
//! the real tools that do run; `tests/compose_nats.rs` runs the NATS configs.
//!
//! One test per file checked, in a module named for it, so that a failure
//! names the file that broke and every other file is still checked.

#[path = "../common/mod.rs"]
mod common;

mod dockerfile;
mod dockerignore;
mod grafana;
mod nats;
mod nginx;
mod prometheus;
mod sentinel;
mod services;
