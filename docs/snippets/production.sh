# --8<-- [start:constraints]
# Airflow's constraints file pins every dependency of an Airflow release (celery, kombu, ...) to
# versions tested together; without it pip picked celery 5.7.0, which apache-airflow-providers-celery
# 3.26.0 cannot import, and the scheduler and workers did not start.
AIRFLOW_VERSION=3.3.2
PYTHON_VERSION="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
CONSTRAINTS="https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
pip install "apache-airflow[celery,postgres,redis]==${AIRFLOW_VERSION}" --constraint "${CONSTRAINTS}"
# the provider with the same constraints, Airflow pinned so resolving the extras cannot move it
pip install "apache-airflow==${AIRFLOW_VERSION}" "airflow-provider-linkai[s3,gcs,analytics]" --constraint "${CONSTRAINTS}"
# --8<-- [end:constraints]

# --8<-- [start:pool]
# one pool for every LinkAI task: at most 8 shards (x max_concurrency requests each) at once
airflow pools set linkai 8 "LinkAI API rate limit"
export LINKAI_POOL=linkai   # on the dag-processor and the workers (parse time)
# --8<-- [end:pool]

# --8<-- [start:trigger]
# Airflow 3's manual run has no logical date; the example DAGs file it under the day it was triggered (UTC)
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
