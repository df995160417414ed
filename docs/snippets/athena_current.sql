-- Athena (Trino): the current transcript of every file; filter on dt to scan fewer partitions
SELECT source_uri, status, text, error_type, error_message, transcribed_at, dt
FROM (
    SELECT *, row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) AS rn
    FROM linkai.transcripts
    WHERE dt >= '2026-11-01'
) AS ranked
WHERE rn = 1
ORDER BY source_uri;
