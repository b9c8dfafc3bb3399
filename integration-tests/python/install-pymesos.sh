#!/usr/bin/env bash
# Installs pymesos 0.3.15 and its dependencies from PyPI into the system python3.
#
# pymesos depends on http-parser 0.9.0, whose shipped C file does not build on
# Python 3.11 or newer. This script regenerates that file with Cython < 3 in a
# temporary directory and installs http-parser from there before installing
# pymesos itself. Running it again when pymesos is importable does nothing.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PYMESOS_VERSION="0.3.15"
HTTP_PARSER_VERSION="0.9.0"

if "$PYTHON" -c 'import pymesos' >/dev/null 2>&1; then
    echo "pymesos is already importable by $PYTHON"
    exit 0
fi

# Some distributions mark the system python as externally managed; pip then
# refuses to install unless told to. Only pass the flag when pip asks for it.
PIP_FLAGS=(--disable-pip-version-check --no-input)
if "$PYTHON" -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    PIP_FLAGS+=(--break-system-packages)
fi
pip_install() {
    "$PYTHON" -m pip install "${PIP_FLAGS[@]}" "$@"
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if ! "$PYTHON" -c 'import http_parser.parser' >/dev/null 2>&1; then
    echo "building http-parser $HTTP_PARSER_VERSION with a regenerated C file"
    # Cython goes into a private directory so the system python keeps its own
    # Cython version, if any.
    "$PYTHON" -m pip install "${PIP_FLAGS[@]}" --target "$WORK/cython" 'cython<3'
    "$PYTHON" -m pip download "${PIP_FLAGS[@]}" --no-deps --no-binary :all: \
        --dest "$WORK/dl" "http-parser==$HTTP_PARSER_VERSION"
    tar -xzf "$WORK/dl/http-parser-$HTTP_PARSER_VERSION.tar.gz" -C "$WORK"
    (
        cd "$WORK/http-parser-$HTTP_PARSER_VERSION"
        PYTHONPATH="$WORK/cython" "$PYTHON" -m cython http_parser/parser.pyx -o http_parser/parser.c
        pip_install .
    )
fi

pip_install "pymesos==$PYMESOS_VERSION"
"$PYTHON" -c 'import pymesos; from pymesos import MesosSchedulerDriver, Scheduler'
echo "pymesos $PYMESOS_VERSION installed for $PYTHON"
