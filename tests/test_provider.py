"""Registration with Airflow: the entry point, the connection type and its form, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import linkai_provider

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=False
    )


def test_provider_info_describes_hook_operator_and_connection_form():
    info = linkai_provider.get_provider_info()
    assert info["package-name"] == "airflow-provider-linkai"
    assert info["versions"] == [linkai_provider.__version__]
    [conn_type] = info["connection-types"]
    assert conn_type["hook-class-name"] == "linkai_provider.hooks.linkai.LinkAIHook"
    assert (conn_type["connection-type"], conn_type["hook-name"]) == ("linkai", "LinkAI")
    assert info["operators"][0]["python-modules"] == ["linkai_provider.operators.transcribe"]
    behaviour = conn_type["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"]["password"] == "API Key"
    assert behaviour["placeholders"]["host"] == "https://api.linkai.cloud"
    assert set(conn_type["conn-fields"]) == {"timeout", "max_retries", "proxy", "verify", "extra_fields"}
    from linkai_provider.hooks.linkai import LinkAIHook

    assert LinkAIHook.get_ui_field_behaviour()["relabeling"]["password"] == "API Key"  # Airflow 3.1's form


def test_providers_manager_finds_the_hook_and_form():
    """What the UI's connection form is built from (Airflow 3.2+: provider info, no hook import)."""
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-provider-linkai" in manager.providers
    widgets = manager.connection_form_widgets
    for name in ("timeout", "max_retries", "proxy", "verify", "extra_fields"):
        assert widgets[f"extra__linkai__{name}"].field_name == name
    assert widgets["extra__linkai__verify"].field["value"] is True
    assert widgets["extra__linkai__timeout"].field["schema"]["title"] == "Timeout (seconds)"
    behaviour = manager.field_behaviours["linkai"]
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    hook = ProvidersManagerTaskRuntime().hooks["linkai"]
    assert hook is not None and hook.hook_class_name == "linkai_provider.hooks.linkai.LinkAIHook"
    assert hook.connection_id_attribute_name == "linkai_conn_id"


@pytest.mark.usefixtures("airflow_home")
def test_cli_lists_provider_adds_and_tests_a_connection(linkai_server):
    listed = airflow("providers", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert "airflow-provider-linkai" in [p["package_name"] for p in json.loads(listed.stdout)]

    added = airflow(
        "connections", "add", "linkai_cli_test", "--conn-type", "linkai",
        "--conn-host", linkai_server.url, "--conn-password", linkai_server.api_key,
        "--conn-extra", json.dumps({"timeout": 30, "extra_fields": {"language": "en"}}),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    tested = airflow("connections", "test", "linkai_cli_test", AIRFLOW__CORE__TEST_CONNECTION="Enabled")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Connection success!" in tested.stdout
    assert linkai_server.api_key not in tested.stdout + tested.stderr

    wrong = json.dumps({"conn_type": "linkai", "host": linkai_server.url, "password": "sk-wrong"})
    tested = airflow(
        "connections", "test", "linkai_wrong", AIRFLOW__CORE__TEST_CONNECTION="Enabled", AIRFLOW_CONN_LINKAI_WRONG=wrong
    )
    assert "refused the API key" in tested.stdout + tested.stderr


def test_linkai_config_section_is_declared_and_read_the_airflow_way(tmp_path):
    """`[linkai]` is a provider config section: Airflow lists it with its defaults, and the value comes
    from airflow.cfg or AIRFLOW__LINKAI__* like any other option; the DAGs and the UI read it through
    linkai_provider.settings."""
    options = linkai_provider.get_provider_info()["config"]["linkai"]["options"]
    # the ui_* options are the Transcripts page's (tests/plugins)
    assert set(options) == {"transcripts_url", "transcripts_conn_id", "ui_refresh_seconds", "ui_cache_dir",
                            "ui_memory_limit"}  # fmt: skip
    home = {"AIRFLOW_HOME": str(tmp_path)}
    listed = airflow("config", "list", "--section", "linkai", "--defaults", **home)
    assert listed.returncode == 0 and "transcripts_url" in listed.stdout, listed.stderr
    (tmp_path / "airflow.cfg").write_text("[linkai]\ntranscripts_url = s3://from-cfg/transcripts/\n")
    got = airflow("config", "get-value", "linkai", "transcripts_url", **home)
    assert got.stdout.strip() == "s3://from-cfg/transcripts/", got.stderr
    script = "from linkai_provider import settings; print(settings.transcripts_url(), settings.transcripts_conn_id())"
    read = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **home})
    assert read.stdout.split() == ["s3://from-cfg/transcripts", "None"], read.stderr
    env = {**home, "AIRFLOW__LINKAI__TRANSCRIPTS_URL": "gs://env/t", "AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID": "gcs"}
    read = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **env})
    assert read.stdout.split() == ["gs://env/t", "gcs"], read.stderr
