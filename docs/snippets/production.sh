# --8<-- [start:wheel]
# in a checkout of this repository: build the provider's wheel into dist/ (pip alone does it;
# `python -m build --wheel` gives the same file)
pip wheel --no-deps --wheel-dir dist .
# --8<-- [end:wheel]

# --8<-- [start:constraints]
# Airflow's constraints file pins every dependency of an Airflow release (celery, kombu, ...) to
# versions tested together; without it pip picked celery 5.7.0, which apache-airflow-providers-celery
# 3.26.0 cannot import, and the scheduler and workers did not start.
AIRFLOW_VERSION=3.3.2
PYTHON_VERSION="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
CONSTRAINTS="https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
pip install "apache-airflow[celery,postgres,redis]==${AIRFLOW_VERSION}" --constraint "${CONSTRAINTS}"
# the provider from the wheel in dist/, Airflow pinned so resolving the extras cannot move it
pip install --find-links dist "apache-airflow==${AIRFLOW_VERSION}" "airflow-provider-linkai[s3,gcs,analytics,audio]" --constraint "${CONSTRAINTS}"
# --8<-- [end:constraints]

# --8<-- [start:download]
# on a machine that reaches PyPI: every wheel the deployment needs, into wheelhouse/ (copy it over)
pip wheel --no-deps --wheel-dir wheelhouse .
pip download --dest wheelhouse --find-links wheelhouse \
    "apache-airflow==3.3.2" "apache-airflow-providers-celery==3.26.0" "celery[redis]>=5.5,<5.7" \
    "psycopg2-binary>=2.9" "asyncpg>=0.30" "airflow-provider-linkai[s3,gcs,analytics,audio]"
# --8<-- [end:download]

# --8<-- [start:airgapped]
# on the machine without internet: the same pins, from wheelhouse/ only
pip install --no-index --find-links wheelhouse \
    "apache-airflow==3.3.2" "apache-airflow-providers-celery==3.26.0" "celery[redis]>=5.5,<5.7" \
    "psycopg2-binary>=2.9" "asyncpg>=0.30" "airflow-provider-linkai[s3,gcs,analytics,audio]"
# --8<-- [end:airgapped]

# --8<-- [start:env]
# The same settings on every component (api-server, scheduler, dag-processor, triggerer, workers),
# e.g. in an environment file that each one's service unit loads. Hosts and secrets are examples.
export AIRFLOW_HOME=/opt/airflow
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:airflow@db.internal:5432/airflow
export AIRFLOW__CELERY__BROKER_URL=redis://redis.internal:6379/0
export AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql+psycopg2://airflow:airflow@db.internal:5432/airflow
export AIRFLOW__API__HOST=0.0.0.0
export AIRFLOW__API__PORT=8080
export AIRFLOW__API__BASE_URL=http://airflow.internal:8080
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://airflow.internal:8080/execution/
export AIRFLOW__API_AUTH__JWT_SECRET="replace with one long random string, the same on every component"
export AIRFLOW__API__SECRET_KEY="replace with another long random string, the same on every component"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# several workers per host: each reports its own name (LINKAI_WORKER_NAME on its start line, below)
export AIRFLOW__CORE__HOSTNAME_CALLABLE=linkai_provider.hostname.worker_name
# the UI's and the REST API's connection Test button (off by default)
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
# the provider: the transcript dataset (the Asset's URI, read when DAG files are parsed), the API key
export AIRFLOW__LINKAI__TRANSCRIPTS_URL=s3://my-lake/transcripts
export AIRFLOW_CONN_LINKAI_DEFAULT='{"conn_type": "linkai", "host": "https://api.linkai.cloud", "password": "sk-your-key"}'
# the example DAGs: where the audio is
export AIRFLOW_VAR_LINKAI_AUDIO_URL=s3://my-calls/recordings
# --8<-- [end:env]

# --8<-- [start:migrate]
airflow db migrate
# --8<-- [end:migrate]

# --8<-- [start:components]
# one line per component, each in its own terminal or service unit
airflow api-server
airflow scheduler
airflow dag-processor
airflow triggerer
# --8<-- [end:components]

# --8<-- [start:workers]
# Two Celery workers on one host: each its own Celery node name (-H), its own name in the UI
# (LINKAI_WORKER_NAME, read by linkai_provider.hostname.worker_name) and its own log-server port.
# 8793 is the workers' default; 8794 is the triggerer's log server, so the second worker takes 8795.
LINKAI_WORKER_NAME=worker1 AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8793 airflow celery worker -H worker1@%h
LINKAI_WORKER_NAME=worker2 AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8795 airflow celery worker -H worker2@%h
# --8<-- [end:workers]

# --8<-- [start:pool]
# one pool for every LinkAI task: at most 8 shards (x max_concurrency requests each) at once
airflow pools set linkai 8 "LinkAI API rate limit"
export LINKAI_POOL=linkai   # on the dag-processor and the workers (parse time)
# --8<-- [end:pool]

# --8<-- [start:trigger]
# a manual run without a logical date (Airflow 3's default): the nightly DAG reads the day that ended
airflow dags trigger linkai_nightly_transcription
# --8<-- [end:trigger]

# --8<-- [start:events]
# the transcript Asset's events through the REST API (simple auth manager; other auth managers issue
# their own tokens): one per run that wrote rows, with the rows written and where
TOKEN=$(curl -s -X POST "$AIRFLOW_URL/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\": \"$AIRFLOW_USER\", \"password\": \"$AIRFLOW_PASSWORD\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
ASSET_ID=$(curl -s -H "Authorization: Bearer $TOKEN" "$AIRFLOW_URL/api/v2/assets?uri_pattern=transcripts" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["assets"][0]["id"])')
curl -s -H "Authorization: Bearer $TOKEN" "$AIRFLOW_URL/api/v2/assets/events?asset_id=$ASSET_ID&order_by=-timestamp"
# --8<-- [end:events]
