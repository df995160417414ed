-- Where was "quarterly report" said? One row per piece that holds it, with its time in the recording.
SELECT
    source_uri,
    printf('%02d:%02d', CAST(seg.start_s // 60 AS INTEGER), CAST(seg.start_s % 60 AS INTEGER)) AS piece_starts_at,
    round(seg.start_s, 1) AS start_s,
    round(seg.end_s, 1) AS end_s,
    seg.text
FROM (
    SELECT source_uri, transcribed_at, unnest(segments) AS seg
    FROM read_parquet('transcripts/*/*.parquet', hive_partitioning = true)
    WHERE status = 'ok'
)
WHERE seg.text ILIKE '%quarterly report%'
ORDER BY source_uri, seg.start_s;
