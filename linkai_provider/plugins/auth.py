"""Who may see transcripts: Airflow's own login and permissions, applied to every path of the page.

A plugin's FastAPI app is mounted on the api-server but gets none of the protection of Airflow's
routes: this module is that protection.

* **Authentication.** A request must carry a JWT issued by the deployment's auth manager: the UI's
  own ``_token`` cookie (the page runs inside the UI, same origin) or ``Authorization: Bearer`` (a
  script, with a token from ``POST /auth/token``). The auth manager validates it (signature, expiry,
  audience, revocation) exactly as for ``/api/v2``. Missing, expired, forged or revoked: 401.
* **Authorization.** Transcripts are what DAG runs produced, so they follow DAG-run permissions:
  the user must be allowed to read DAG runs (403 otherwise), and sees only the rows of the DAGs
  they may read. Rows written outside any DAG (``linkai-transcribe``, bulk loads) have no DAG to
  check against: only users who may read *every* DAG see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, status

from linkai_provider.plugins.queries import Access

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def _token(request: Request) -> str | None:
    """The Bearer token if one is given (an explicit credential wins, as in Airflow), else the cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


async def current_user(request: Request) -> BaseUser:
    """The user of a request's Airflow token; 401 for anything else. FastAPI dependency."""
    from airflow.api_fastapi.app import get_auth_manager
    from jwt import ExpiredSignatureError, InvalidTokenError

    token = _token(request)
    if token is None:
        raise _unauthorized("Not authenticated: log in to Airflow, or send an Airflow token as Bearer")
    try:
        return await get_auth_manager().get_user_from_token(token)
    except ExpiredSignatureError:
        raise _unauthorized("Token expired: log in to Airflow again") from None
    except (InvalidTokenError, ValueError, KeyError):
        raise _unauthorized("Invalid token: not issued by this Airflow deployment") from None


def require_run_reader(user: BaseUser) -> None:
    """403 unless ``user`` may read DAG runs at all."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "Forbidden: reading transcripts needs permission to read DAG runs"
        )


def require_dag_run_reader(user: BaseUser, dag_id: str) -> None:
    """403 unless ``user`` may read the runs of ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    allowed = get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=details, user=user
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: you may not read the runs of DAG {dag_id!r}")


def access_of(user: BaseUser, dataset_dags: frozenset[str | None]) -> Access:
    """The rows ``user`` may see, given the DAG ids that wrote rows to the dataset."""
    from airflow.api_fastapi.app import get_auth_manager

    manager: Any = get_auth_manager()
    every_dag = bool(manager.is_authorized_dag(method="GET", user=user))
    named = {d for d in dataset_dags if d is not None}
    if every_dag:
        return Access(dag_ids=None, undagged=True)
    readable = set(manager.get_authorized_dag_ids(user=user, method="GET"))
    # DAGs that wrote rows but are gone from Airflow (renamed, deleted) are not readable by anyone but
    # users who may read every DAG: the auth manager cannot vouch for them.
    return Access(dag_ids=frozenset(named & readable), undagged=False)
