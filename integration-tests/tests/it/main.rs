//! End-to-end tests: one binary, one module per scenario.
//!
//! They need a running Docker engine and the local images built by
//! `scripts/build-test-images.sh` (`make deps` does both).

mod support;
mod redis_end_to_end;
mod dev_restart;
