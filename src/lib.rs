//! The `weir` command: the embedded mode (`weir dev`: an edge and a producer
//! in one process on the in-memory bus and store) and the services
//! (`weir edge`, `weir producer`, the same as the `weir-edge` and
//! `weir-producer` binaries). The load tool is its own binary,
//! `weir-bench` (`tools/bench`), not part of what operators run.

pub mod dev;
