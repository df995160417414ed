"""An auth manager for the permission tests: Airflow's SimpleAuthManager (its tokens, its login), with
per-DAG permissions as a deployment with FAB or Keycloak would have them:

* ``admin``: everything;
* ``analyst``: may read DAG runs, but only of the DAG ``sales_calls``;
* ``guest``: logged in, but may read no DAG run at all.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ANALYST_DAGS = frozenset({"sales_calls"})


class PerDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.username == "admin":
            return True
        if user.username != "analyst" or method != "GET":
            return False
        if details is not None and details.id:
            return details.id in ANALYST_DAGS
        # no DAG named: "DAG runs" in general yes (like FAB's "can read on DAG Runs"), "every DAG" no
        return access_entity is not None

    def get_authorized_dag_ids(self, *, user, method="GET", session=None) -> set[str]:
        if user.username == "admin":
            return super().get_authorized_dag_ids(user=user, method=method)
        return set(ANALYST_DAGS) if user.username == "analyst" and method == "GET" else set()
