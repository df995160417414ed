#!/usr/bin/env bash
# The project's test command: sets up the environment if needed, then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k hook -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
