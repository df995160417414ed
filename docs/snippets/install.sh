# --8<-- [start:basic]
# in a checkout of this repository (the provider is not on PyPI)
pip install ".[s3,gcs,analytics,audio]"
# --8<-- [end:basic]

# --8<-- [start:wheel]
# or build a wheel once and install it wherever Airflow runs
pip wheel --no-deps --wheel-dir dist .
pip install --find-links dist "airflow-provider-linkai[s3,gcs,analytics,audio]"
# --8<-- [end:wheel]

# --8<-- [start:editable]
# working on the provider: an editable install with the test and docs tools
pip install -e ".[dev]"
# --8<-- [end:editable]

# --8<-- [start:pinned]
pip install --find-links dist "apache-airflow==3.3.2" "airflow-provider-linkai[s3,gcs,analytics,audio]"
# --8<-- [end:pinned]

# --8<-- [start:providers]
# an `aws` connection for s3:// URLs, a `google_cloud_platform` one for gs:// URLs
pip install apache-airflow-providers-amazon
pip install apache-airflow-providers-google
# --8<-- [end:providers]

# --8<-- [start:docker]
docker build --target airflow -t airflow-provider-linkai:local .
# --8<-- [end:docker]
