"""Fixtures for the Transcripts page: Airflow's own api-server app in this process (the plugin mounted
by Airflow from the provider's entry point, Airflow's auth manager issuing and checking tokens), and
tokens for users with different permissions."""

from __future__ import annotations

import json
import os

import pytest

USERS = {"admin": "admin", "analyst": "viewer", "guest": "viewer"}


@pytest.fixture(scope="session")
def auth_env(airflow_home, tmp_path_factory):
    """The settings every Airflow component of these tests shares (the JWT secret signs and checks tokens)."""
    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({u: f"{u}-pw" for u in USERS}))
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "linkai-ui-test-jwt-secret-" + "0123456789abcdef" * 3,
        "AIRFLOW__API__SECRET_KEY": "linkai-ui-test-secret-key-0123456789",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "AIRFLOW__LINKAI__UI_REFRESH_SECONDS": "0",  # every request sees the dataset as it is now
    }
    os.environ.update(env)
    return env


@pytest.fixture(scope="module")
def airflow_app(auth_env):
    """Airflow's api-server app (``airflow api-server`` serves this object), with the per-DAG auth manager."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.plugins.authz.PerDagAuthManager")
    purge_cached_app()
    app = create_app()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client
    purge_cached_app()
    mp.undo()


@pytest.fixture(scope="module")
def tokens(airflow_app):
    """A token per user, from Airflow's own login endpoint (``POST /auth/token``)."""
    out = {}
    for user in USERS:
        answer = airflow_app.post("/auth/token", json={"username": user, "password": f"{user}-pw"})
        assert answer.status_code == 201, answer.text
        out[user] = answer.json()["access_token"]
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Mark a failed test so the browser fixture can take a screenshot of what was on screen."""
    outcome = yield
    if outcome.get_result().failed:
        item.ui_failed = True
