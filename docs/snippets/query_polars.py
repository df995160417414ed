"""The current transcript of every file, with Polars (lazy: only the needed columns are read).

python query_polars.py /data/transcripts
python query_polars.py s3://my-bucket/transcripts     # AWS_* settings, AWS_ENDPOINT_URL for MinIO
"""

import sys

import polars as pl

from linkai_provider.dataset import SCHEMA


# --8<-- [start:current]
def current_transcripts(dataset: str, storage_options: dict | None = None) -> pl.DataFrame:
    # The provider's schema reads parts of every version as one table: columns and struct fields
    # added since (warnings, segments.channel) are null in older parts.
    rows = pl.scan_parquet(
        dataset.rstrip("/") + "/**/*.parquet",
        hive_partitioning=True,
        schema=pl.from_arrow(SCHEMA.empty_table()).schema,
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(missing_struct_fields="insert"),
        storage_options=storage_options,
    )
    return (
        rows.sort("transcribed_at", descending=True)
        .unique(subset="source_uri", keep="first")
        .sort("source_uri")
        .collect()
    )


# --8<-- [end:current]


if __name__ == "__main__":
    print(current_transcripts(sys.argv[1]).select("source_uri", "status", "text", "transcribed_at"))
