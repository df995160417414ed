-- BigQuery: the transcript dataset in GCS as an external table with Hive partitioning.
-- The wildcard matches part files at any depth; dt comes from the dt=YYYY-MM-DD folder names.
CREATE OR REPLACE EXTERNAL TABLE linkai.transcripts (
    source_uri          STRING,
    source_size_bytes   INT64,
    source_fingerprint  STRING,
    content_sha256      STRING,
    audio_format        STRING,
    audio_duration_s    FLOAT64,
    status              STRING,
    text                STRING,
    error_type          STRING,
    error_code          INT64,
    error_message       STRING,
    attempts            INT64,
    latency_ms          INT64,
    transcribed_at      TIMESTAMP,
    endpoint            STRING,
    dag_id              STRING,
    task_id             STRING,
    run_id              STRING,
    map_index           INT64,
    try_number          INT64,
    chunks              INT64,
    segments            ARRAY<STRUCT<start_s FLOAT64, end_s FLOAT64, text STRING, channel INT64>>,
    warnings            ARRAY<STRING>
)
WITH PARTITION COLUMNS (dt DATE)
OPTIONS (
    format = 'PARQUET',
    enable_list_inference = true,
    uris = ['gs://my-bucket/transcripts/*.parquet'],
    hive_partition_uri_prefix = 'gs://my-bucket/transcripts',
    require_hive_partition_filter = false
);
