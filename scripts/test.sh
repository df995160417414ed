#!/usr/bin/env bash
# The project's test command: sets up the environment if needed, then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k hook -x`.
#
# Two parts: every test but those marked `serial` on all cores (pytest-xdist, TEST_WORKERS, default
# the number of cores), then the `serial` tests alone: they measure timing-bound figures (what a
# SIGKILL wastes, the share of 429s under a concurrency limit) that a second busy worker would skew.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
VENV=${VENV:-.venv}
WORKERS=${TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}
status=0
"$VENV/bin/python" -m pytest -p no:cacheprovider -n "$WORKERS" -m "not serial" "$@" || status=$?
serial=0
"$VENV/bin/python" -m pytest -p no:cacheprovider -m serial "$@" || serial=$?
[ "$serial" -eq 5 ] && serial=0  # the arguments selected no serial test: nothing to run
[ "$status" -eq 5 ] && status=0
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$serial"
