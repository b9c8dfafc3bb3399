//! Integration tests against the real Docker engine of this machine, and end-to-end
//! runs of the executor against a fake agent.
//!
//! No registry is reachable: the tests import a busybox image from a tarball they
//! build themselves, and never pull. Every container they create carries the
//! [`support::TEST_LABEL`] label and is removed at the end of its test.

// Support code outside `#[test]` functions panics like the tests do: that is how a
// test reports failure.
#![allow(clippy::unwrap_used)]

mod docker;
mod executor;
mod support;
