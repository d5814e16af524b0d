#!/usr/bin/env bash
# Installs what the tests need (the package, its pinned stack, a real PLUMED kernel) into the
# current Python environment and runs the default test suite. Extra arguments go to pytest
# (e.g. `--runslow`). Used as is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q -e ".[test]"
# hillclimber bundles a PLUMED 2.11 kernel + Python bindings; its own dependencies are not needed.
"$PY" -m pip install -q --no-deps "hillclimber==0.1.8"
"$PY" -m pytest "$@"
