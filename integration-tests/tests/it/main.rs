//! End-to-end tests: one binary, one module per scenario.
//!
//! They need a running Docker engine and the local images built by
//! `scripts/build-test-images.sh` (`make deps` does both).

// Helpers outside #[test] functions unwrap too: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_restart;
mod cli;
mod conformance;
mod dev_restart;
mod leader_change;
mod placement_volumes;
mod redis_end_to_end;
mod redis_failover;
mod schemathesis;
mod served_executor;
mod support;
mod tracing_export;
