airflow connections add linkai_default \
    --conn-type linkai \
    --conn-host https://api.linkai.cloud \
    --conn-password "$LINKAI_API_KEY" \
    --conn-extra '{"timeout": 600, "extra_fields": {"language": "en"}}'
