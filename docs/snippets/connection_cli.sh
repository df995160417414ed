# --conn-port 0: the base URL carries any port; 0 (ignored by the hook) keeps the UI's Test button
# working, which Airflow 3.3 refuses for a connection stored without a port (see "Testing the connection").
airflow connections add linkai_default \
    --conn-type linkai \
    --conn-host https://api.linkai.cloud \
    --conn-port 0 \
    --conn-password "$LINKAI_API_KEY" \
    --conn-extra '{"timeout": 600, "extra_fields": {"language": "en"}}'
