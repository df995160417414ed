-- The cost of each day: audio hours billed (every ok row, re-transcriptions included) and files failed
SELECT dt,
       count(*) FILTER (WHERE status = 'ok')                      AS files_ok,
       count(*) FILTER (WHERE status = 'failed')                  AS files_failed,
       round(sum(audio_duration_s) FILTER (WHERE status = 'ok') / 3600, 3) AS audio_hours_billed,
       round(avg(latency_ms) FILTER (WHERE status = 'ok'))        AS avg_latency_ms
FROM read_parquet('transcripts/**/*.parquet', hive_partitioning = true, union_by_name = true)
GROUP BY dt
ORDER BY dt;
