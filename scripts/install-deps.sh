#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine with Rust and Docker lacks to build and
# test mesos-stateful, and builds the local test images. Idempotent.
#
#   librocksdb-dev  RocksDB 7.8 linked instead of compiled (seconds instead of ~20 min)
#   libclang-dev    bindgen, which every build of the rocksdb crate runs
#   redis-server    its binaries go into the local Redis test image
#   busybox-static  a shell and core tools for the local test images
#   docker-registry a registry on 127.0.0.1 for the executor's image pull tests
#   zookeeper       a real ZooKeeper for the scheduler's leader detection tests
set -euo pipefail

packages=(librocksdb-dev libclang-dev redis-server busybox-static docker-registry zookeeper)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The packages start services; the project needs only their binaries.
    $sudo systemctl disable --now redis-server docker-registry zookeeper >/dev/null 2>&1 || true
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

here=$(dirname "$0")
# pymesos, the third-party client devcluster is checked against.
"$here/../integration-tests/python/install-pymesos.sh"
# schemathesis, which checks the REST API against its OpenAPI document.
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    pip_flags=(--disable-pip-version-check --no-input)
    python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' \
        && pip_flags+=(--break-system-packages)
    python3 -m pip install "${pip_flags[@]}" 'schemathesis>=4.32,<5'
fi
"$here/build-test-images.sh"
