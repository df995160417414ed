"""The current transcript of every file, with PySpark (Spark SQL has no QUALIFY: a subquery instead).

spark-submit query_spark.py s3a://my-bucket/transcripts
"""

import sys

# --8<-- [start:current]
CURRENT = """
    SELECT source_uri, status, text, error_type, error_message, transcribed_at, dt
    FROM (
        SELECT *, row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) AS rn
        FROM transcripts
    ) AS ranked
    WHERE rn = 1
    ORDER BY source_uri
"""


def current_transcripts(spark, dataset: str):
    # Spark discovers the dt=YYYY-MM-DD partitions and skips files whose names start with . or _;
    # mergeSchema reads parts of every version as one table (columns added since are null in older parts)
    spark.read.option("mergeSchema", "true").parquet(dataset).createOrReplaceTempView("transcripts")
    return spark.sql(CURRENT)


# --8<-- [end:current]


if __name__ == "__main__":
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("linkai-transcripts").getOrCreate()
    current_transcripts(spark, sys.argv[1]).show(truncate=60)
