//! End-to-end tests of mesos-stateful live under `tests/it`: real Docker, real
//! RocksDB, devcluster, and the real executor and `mesos-stateful` binaries. This
//! library is empty on purpose; the crate exists for its tests.
