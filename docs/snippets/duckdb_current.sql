-- duckdb, from the folder that holds the dataset `transcripts/`
-- (or give an s3:// or gs:// glob after `LOAD httpfs;` and a CREATE SECRET)
SELECT source_uri, status, text, error_message, transcribed_at, dt
FROM read_parquet('transcripts/**/*.parquet', hive_partitioning = true, union_by_name = true)
QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) = 1
ORDER BY source_uri;
