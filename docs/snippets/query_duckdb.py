"""The current transcript of every file, with DuckDB, from local disk, S3 or GCS.

python query_duckdb.py /data/transcripts
python query_duckdb.py s3://my-bucket/transcripts     # AWS_* settings, AWS_ENDPOINT_URL for MinIO
python query_duckdb.py gs://my-bucket/transcripts     # Google default credentials
"""

import sys

import duckdb
import fsspec

# --8<-- [start:current]
# One row per file: its latest row, ok or failed. `dataset` is the folder above dt=YYYY-MM-DD/.
CURRENT = """
    SELECT source_uri, status, text, error_type, error_message, audio_duration_s, transcribed_at, dt
    FROM read_parquet($glob, hive_partitioning = true, union_by_name = true)
    QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) = 1
    ORDER BY source_uri
"""


def current_transcripts(con: duckdb.DuckDBPyConnection, dataset: str) -> list[tuple]:
    return con.execute(CURRENT, {"glob": dataset.rstrip("/") + "/**/*.parquet"}).fetchall()


# --8<-- [end:current]


# --8<-- [start:object-store]
def connect(dataset: str) -> duckdb.DuckDBPyConnection:
    """A connection that can read ``dataset``: s3:// and gs:// go through fsspec (s3fs, gcsfs),
    which take credentials from the environment like boto3 and google-auth do."""
    con = duckdb.connect()
    protocol, sep, _ = dataset.partition("://")
    if sep and protocol not in ("file", "local"):
        con.register_filesystem(fsspec.filesystem(protocol))
    return con


# --8<-- [end:object-store]


if __name__ == "__main__":
    dataset = sys.argv[1]
    for row in current_transcripts(connect(dataset), dataset):
        print(row)
