-- Amazon Athena (engine v3): the transcript dataset as a table, partitions found by projection
-- (no MSCK REPAIR, no crawler: a new dt= folder is queryable as soon as its first part file lands).
CREATE EXTERNAL TABLE IF NOT EXISTS linkai.transcripts (
    source_uri          string,
    source_size_bytes   bigint,
    source_fingerprint  string,
    content_sha256      string,
    audio_format        string,
    audio_duration_s    double,
    status              string,
    text                string,
    error_type          string,
    error_code          int,
    error_message       string,
    attempts            int,
    latency_ms          bigint,
    transcribed_at      timestamp,
    endpoint            string,
    dag_id              string,
    task_id             string,
    run_id              string,
    map_index           int,
    try_number          int,
    chunks              int,
    segments            array<struct<start_s:double,end_s:double,text:string,channel:int>>,
    warnings            array<string>
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://my-bucket/transcripts/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.dt.type' = 'date',
    'projection.dt.format' = 'yyyy-MM-dd',
    'projection.dt.range' = '2026-01-01,NOW',
    'projection.dt.interval' = '1',
    'projection.dt.interval.unit' = 'DAYS',
    'storage.location.template' = 's3://my-bucket/transcripts/dt=${dt}/'
);
