# --8<-- [start:json]
# JSON form: every field by name (Airflow >= 2.3)
export AIRFLOW_CONN_LINKAI_DEFAULT='{"conn_type": "linkai", "host": "https://api.linkai.cloud", "password": "sk-your-key"}'
# --8<-- [end:json]

# --8<-- [start:extras]
# JSON form with every extra
export AIRFLOW_CONN_LINKAI_TUNED='{
    "conn_type": "linkai",
    "host": "https://api.linkai.cloud",
    "password": "sk-your-key",
    "extra": {
        "timeout": 600,
        "max_retries": 8,
        "proxy": "http://proxy.internal:3128",
        "verify": "/etc/ssl/certs/corporate-ca.pem",
        "extra_fields": {"language": "en"}
    }
}'
# --8<-- [end:extras]

# --8<-- [start:uri]
# URI form: linkai://:KEY@host:port (the key is the password; no login)
export AIRFLOW_CONN_LINKAI_LOCAL='linkai://:sk-local@127.0.0.1:8765'
# Extras as query parameters, URL-encoded; https is chosen for any host but loopback
export AIRFLOW_CONN_LINKAI_EU='linkai://:sk-your-key@api.linkai.cloud?timeout=600&max_retries=3&extra_fields=%7B%22language%22%3A+%22de%22%7D'
# --8<-- [end:uri]
