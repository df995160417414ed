"""The current transcript of every file, with pandas (pyarrow engine).

python query_pandas.py /data/transcripts
python query_pandas.py s3://my-bucket/transcripts     # s3fs; AWS_* settings, AWS_ENDPOINT_URL for MinIO
"""

import sys

import pandas as pd
import pyarrow as pa

from linkai_provider.dataset import SCHEMA


# --8<-- [start:current]
def current_transcripts(dataset: str, storage_options: dict | None = None) -> pd.DataFrame:
    # pyarrow reads the dt=YYYY-MM-DD folders as a `dt` column and skips hidden temporary files;
    # the provider's schema reads parts of every version as one table (columns added since are null);
    # numpy_nullable keeps error_code an integer column despite its nulls
    df = pd.read_parquet(
        dataset,
        engine="pyarrow",
        schema=SCHEMA.append(pa.field("dt", pa.string())),
        partitioning="hive",
        storage_options=storage_options,
        dtype_backend="numpy_nullable",
    )
    latest = df.sort_values("transcribed_at").drop_duplicates("source_uri", keep="last")
    return latest.sort_values("source_uri").reset_index(drop=True)


# --8<-- [end:current]


if __name__ == "__main__":
    print(current_transcripts(sys.argv[1])[["source_uri", "status", "text", "transcribed_at"]])
