"""Apache Airflow provider for the LinkAI speech recognition API."""

from __future__ import annotations

__version__ = "0.3.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    from linkai_provider.settings import CONFIG

    return {
        "package-name": "airflow-provider-linkai",
        "name": "LinkAI",
        "description": "Transcribe audio on local disk, S3 or GCS into Parquet with the LinkAI speech API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "LinkAI",
                "external-doc-url": "https://api.linkai.cloud",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "LinkAI", "python-modules": ["linkai_provider.hooks.linkai"]}],
        "operators": [{"integration-name": "LinkAI", "python-modules": ["linkai_provider.operators.transcribe"]}],
        "config": CONFIG,
        # the Transcripts page. Airflow loads it from the airflow.plugins entry point by default; this entry
        # is the provider-info way (read when [core] lazy_discover_providers is off), as OpenLineage does both
        "plugins": [{"name": "linkai", "plugin-class": "linkai_provider.plugins.LinkAIPlugin"}],
        "extra-links": ["linkai_provider.plugins.links.TranscriptsLink"],
        "connection-types": [
            {
                "hook-class-name": "linkai_provider.hooks.linkai.LinkAIHook",
                "connection-type": "linkai",
                "hook-name": "LinkAI",
                # Airflow 3.2+ builds the connection form from these two, without importing the hook
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 300},
                        "description": "Read timeout of one request; recognition of long audio can take minutes.",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "default": 5},
                        "description": "Retries of transient errors (429, 5xx, timeouts, dropped connections).",
                    },
                    "proxy": {
                        "label": "Proxy URL",
                        "schema": {"type": ["string", "null"]},
                        "description": "HTTP(S) proxy for calls to the API, e.g. http://proxy:3128.",
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "schema": {"type": ["boolean", "null"], "default": True},
                        "description": "Verify the server's TLS certificate (on unless turned off here).",
                    },
                    "extra_fields": {
                        "label": "Extra form fields (JSON)",
                        "schema": {"type": ["object", "string", "null"]},
                        "description": 'Form fields sent with every upload, e.g. {"language": "en"}.',
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.linkai.cloud",
                        "password": "sk-...",
                    },
                },
            }
        ],
    }
