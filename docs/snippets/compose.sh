# --8<-- [start:up]
cp .env.example .env          # optional: every setting has a default
docker compose up -d --build  # the first build takes a few minutes
docker compose ps             # "healthy"; airflow-init, minio-init, linkai-samples "Exited (0)"
# --8<-- [end:up]

# --8<-- [start:trigger]
docker compose exec airflow-scheduler airflow dags trigger linkai_nightly_transcription
docker compose exec airflow-scheduler airflow dags list-runs linkai_nightly_transcription
# --8<-- [end:trigger]

# --8<-- [start:gcs]
docker compose exec airflow-scheduler airflow dags trigger linkai_nightly_transcription \
    --conf "{\"source\": \"gs://linkai/audio/$(date -u +%F)/\", \"source_conn_id\": \"fake_gcs\"}"
# --8<-- [end:gcs]

# --8<-- [start:query]
export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
python docs/snippets/query_duckdb.py s3://linkai/transcripts
# --8<-- [end:query]

# --8<-- [start:real-api]
# in .env: LINKAI_HOST=https://api.linkai.cloud and LINKAI_API_KEY=<your key>, then
docker compose up -d
docker compose run --rm airflow-cli connections test linkai_default
# --8<-- [end:real-api]

# --8<-- [start:scale]
docker compose up -d --scale airflow-worker=3
docker compose exec airflow-scheduler airflow dags trigger linkai_sharded_transcription \
    --conf '{"shards": 6}'
# --8<-- [end:scale]

# --8<-- [start:down]
docker compose down               # stop; keeps the database, MinIO and GCS data (named volumes)
docker compose down --volumes     # stop and delete everything
# --8<-- [end:down]
