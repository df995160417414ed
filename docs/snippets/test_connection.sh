# Testing connections is off by default in Airflow 3: turn it on for the UI's "Test" button
# (set it on the API server) and for the CLI.
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
airflow connections test linkai_default
