#!/usr/bin/env bash
# Checks the architecture invariants of ARCHITECTURE.md with `cargo tree`.
set -euo pipefail

fail=0
complain() { echo "invariant broken: $*" >&2; fail=1; }

# 1. Only the store crate depends on rocksdb (directly).
dependents=$(cargo tree --workspace -i rocksdb -e normal,build --depth 1 --prefix none --format '{p}' 2>/dev/null \
    | awk '{print $1}' | sort -u | grep -v '^rocksdb$' || true)
for crate in $dependents; do
    [ "$crate" = "mesos-stateful-store" ] || complain "$crate depends on rocksdb directly"
done

# 2. proto depends on no runtime and does no I/O.
for runtime in tokio actix actix-rt actix-web hyper reqwest rocksdb mio; do
    if cargo tree -p mesos-stateful-proto -e normal --prefix none --format '{p}' | awk '{print $1}' | grep -qx "$runtime"; then
        complain "mesos-stateful-proto depends on $runtime"
    fi
done

# 3. executor and devcluster never depend on store, actors or scheduler, not even in tests.
for crate in mesos-stateful-executor mesos-stateful-devcluster; do
    for forbidden in mesos-stateful-store mesos-stateful-actors mesos-stateful-scheduler; do
        if cargo tree -p "$crate" -e normal,build,dev --prefix none --format '{p}' | awk '{print $1}' | grep -qx "$forbidden"; then
            complain "$crate depends on $forbidden"
        fi
    done
done

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "architecture invariants hold"
