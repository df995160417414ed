#!/usr/bin/env bash
# The one-command demo (README command 1). On a fresh machine with Python 3.11 and the package
# registries: installs the provider, speaks sample sentences in all ten audio formats, starts
# linkai-server (whisper engine) on 127.0.0.1, runs linkai_nightly_transcription and
# linkai_transcript_analytics through real Airflow (SQLite), and prints the transcripts and the
# daily summary read back from Parquet with DuckDB. Exits non-zero if any step fails.
#
# A second run reuses everything: the venv, the Airflow DB, the audio, and the transcripts (the
# operator's incremental mode skips files already transcribed).
#
# Environment (all optional):
#   VENV               venv to use or create (default .demo/venv); CI passes the dev venv
#   LINKAI_DEMO_DIR    data folder: audio/<day>/, transcripts/dt=<day>/, transcript_summary/
#                      (default /tmp/linkai-demo, the example DAGs' own default)
#   DEMO_DAY           logical date to run (default: today, UTC)
#   DEMO_PORT          server port (default: any free one)
#   DEMO_FRESH=1       delete the data folder and the Airflow home first
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
started=$(date +%s)
step() { echo "[demo $(( $(date +%s) - started ))s] $*"; }

VENV=${VENV:-.demo/venv}
DATA=${LINKAI_DEMO_DIR:-/tmp/linkai-demo}
DAY=${DEMO_DAY:-$(date -u +%F)}
STATE=$REPO/.demo
LOGS=$STATE/logs
export AIRFLOW_HOME=$STATE/airflow
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ "${DEMO_FRESH:-0}" = 1 ]; then
    rm -rf "$DATA" "$AIRFLOW_HOME"
fi
mkdir -p "$LOGS" "$AIRFLOW_HOME" "$DATA"

# -- 1. system and Python packages ------------------------------------------------------------------
if ! command -v espeak-ng >/dev/null; then
    step "installing espeak-ng (Debian package) for the sample speech"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.linkai-demo-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || ! "$VENV/bin/python" -c "import airflow, duckdb, s3fs, faster_whisper, linkai_provider" 2>/dev/null; then
    step "installing airflow-provider-linkai[server,analytics,s3] into $VENV (about a minute)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >"$LOGS/pip.log" 2>&1
    if ! "$VENV/bin/python" -m pip install -q -e ".[server,analytics,s3]" >>"$LOGS/pip.log" 2>&1; then
        tail -30 "$LOGS/pip.log"; exit 1
    fi
    touch "$stamp"
fi
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"

# -- 2. sample speech ------------------------------------------------------------------------------
step "speaking the sample sentences into $DATA/audio/$DAY/"
"$PY" scripts/demo.py samples --audio-root "$DATA/audio" --day "$DAY"

# -- 3. linkai-server, stopped on exit ---------------------------------------------------------------
API_KEY="sk-demo-$RANDOM$RANDOM"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM
step "starting linkai-server --engine whisper on 127.0.0.1"
rm -f "$LOGS/server.json"
linkai-server --host 127.0.0.1 --port "${DEMO_PORT:-0}" --engine whisper --api-key "$API_KEY" \
    --ready-file "$LOGS/server.json" >"$LOGS/server.log" 2>&1 &
SERVER_PID=$!
if ! SERVER_URL=$("$PY" scripts/demo.py wait-server --ready-file "$LOGS/server.json" --pid "$SERVER_PID"); then
    tail -30 "$LOGS/server.log"; exit 1
fi

# -- 4. Airflow: a throwaway SQLite home, the repo's DAGs ---------------------------------------------
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
# extra_fields: form fields sent with every upload; the samples are English (saves language detection)
export AIRFLOW_CONN_LINKAI_DEFAULT="{\"conn_type\": \"linkai\", \"host\": \"$SERVER_URL\", \"password\": \"$API_KEY\",
    \"extra\": {\"extra_fields\": {\"language\": \"en\"}}}"
export AIRFLOW_VAR_LINKAI_AUDIO_URL=file://$DATA/audio
export AIRFLOW__LINKAI__TRANSCRIPTS_URL=file://$DATA/transcripts  # [linkai] transcripts_url
export LINKAI_SUMMARY_URL=file://$DATA/transcript_summary
export LINKAI_TASK_RETRIES=0  # fail now rather than retry minutes later
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

run_logged() {  # run_logged NAME CMD...: output to a log file, shown only on failure
    local name=$1; shift
    if ! "$@" >"$LOGS/$name.log" 2>&1; then
        echo "--- $name failed; last lines of $LOGS/$name.log:" >&2
        tail -40 "$LOGS/$name.log" >&2
        exit 1
    fi
}
migrated="$AIRFLOW_HOME/.migrated"
if [ ! -f "$migrated" ] || [ "$stamp" -nt "$migrated" ] || [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
    step "migrating the Airflow metadata DB ($AIRFLOW_HOME)"
    run_logged db-migrate airflow db migrate
    touch "$migrated"
fi
step "airflow dags test linkai_nightly_transcription $DAY"
run_logged nightly airflow dags test linkai_nightly_transcription "$DAY"
grep -ho "Found [0-9]* file(s): [^[]*" "$LOGS/nightly.log" | tail -1 | sed "s/^/    /" || true
step "airflow dags test linkai_transcript_analytics $DAY"
run_logged analytics airflow dags test linkai_transcript_analytics "$DAY"

# -- 5. what came out ------------------------------------------------------------------------------
"$PY" scripts/demo.py report --transcripts "$DATA/transcripts" --summary "$DATA/transcript_summary" --day "$DAY"
step "done in $(( $(date +%s) - started )) s (logs: $LOGS)"
