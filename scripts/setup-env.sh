#!/usr/bin/env bash
# Prepare a development environment on a fresh machine (Python 3.11 + package registries only):
# Debian's packages the tests run (espeak-ng, PostgreSQL, Redis, Chromium, a JRE), then a venv with
# the provider and every test dependency.
# Idempotent: a second call only checks. Honours VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# espeak-ng speaks the test audio; curl runs the API text's curl example against linkai-server;
# the real-stack test (tests/stack) runs Debian's PostgreSQL and Redis, and drives the UI with
# headless Chromium; the docs' Spark query needs a Java runtime.
missing=""
command -v espeak-ng >/dev/null || missing="$missing espeak-ng"
command -v curl >/dev/null || missing="$missing curl"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v psql >/dev/null || missing="$missing postgresql"
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v chromium >/dev/null || missing="$missing chromium"
command -v chromedriver >/dev/null || missing="$missing chromium-driver"
command -v java >/dev/null || missing="$missing openjdk-17-jre-headless"
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
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
