-- BigQuery: the current transcript of every file
SELECT source_uri, status, text, error_type, error_message, transcribed_at, dt
FROM linkai.transcripts
WHERE dt >= '2026-11-01'
QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) = 1
ORDER BY source_uri;
