#!/usr/bin/env bash
# Prepare a development environment on a fresh machine (Python 3.11 + package registries only):
# Debian's espeak-ng for test speech, then a venv with the provider and every test dependency.
# Idempotent: a second call only checks. Honours VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if ! command -v espeak-ng >/dev/null; then
    echo "setup: installing espeak-ng (test speech)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.linkai-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing airflow-provider-linkai[dev] into $VENV"
    "$VENV/bin/pip" install -q -e ".[dev]"
    touch "$stamp"
fi
