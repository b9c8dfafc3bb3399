//! Integration tests against the real Docker engine of this machine, end-to-end
//! runs of the executor against a fake agent, and the executor's exported spans.
//!
//! No public registry is reachable: the tests import a busybox image from a tarball
//! they build themselves. Pull tests start their own `docker-registry` process on a
//! free loopback port (storage in a temporary directory, killed when the test ends),
//! push the imported image to it with the docker CLI and pull it back. Every container
//! they create carries the [`support::TEST_LABEL`] label or the executor's labels and
//! is removed at the end of its test, as is every pushed or pulled image tag.

// Support code outside `#[test]` functions panics like the tests do: that is how a
// test reports failure.
#![allow(clippy::unwrap_used)]

mod docker;
mod executor;
mod features;
mod spans;
mod support;
