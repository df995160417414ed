# --8<-- [start:install]
# on the api-server (and wherever else the provider runs): DuckDB for the page, s3fs/gcsfs for its dataset
pip install "airflow-provider-linkai[analytics,s3,gcs]"
# --8<-- [end:install]

# --8<-- [start:config]
# the dataset, in the [linkai] section (airflow.cfg) or its environment variables, the same value on
# the api-server as on the dag-processor and the workers
export AIRFLOW__LINKAI__TRANSCRIPTS_URL=s3://my-lake/transcripts
export AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID=aws_default
# --8<-- [end:config]

# --8<-- [start:api]
# a token from Airflow (SimpleAuthManager and FAB take a user and password at /auth/token), then the
# page's JSON API: files that mention a phrase, and the last week per day
TOKEN=$(curl -s -X POST "$AIRFLOW_URL/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\": \"$AIRFLOW_USER\", \"password\": \"$AIRFLOW_PASSWORD\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
curl -s -G "$AIRFLOW_URL/linkai/api/search" -H "Authorization: Bearer $TOKEN" \
    --data-urlencode "q=refund for the" -d limit=3
echo
curl -s "$AIRFLOW_URL/linkai/api/days?limit=7" -H "Authorization: Bearer $TOKEN"
echo
# --8<-- [end:api]
