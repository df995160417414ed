# --8<-- [start:basic]
pip install "airflow-provider-linkai[s3,gcs]"
# --8<-- [end:basic]

# --8<-- [start:pinned]
pip install "apache-airflow==3.3.2" "airflow-provider-linkai[s3,gcs,analytics]"
# --8<-- [end:pinned]

# --8<-- [start:docker]
docker build --target airflow -t airflow-provider-linkai:local .
# --8<-- [end:docker]
