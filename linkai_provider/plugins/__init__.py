"""The provider's Airflow plugin: the Transcripts page under ``/linkai`` of the api-server, with a
"Transcripts" entry in Airflow's navigation.

Registered twice over, as Airflow's OpenLineage provider does: the ``airflow.plugins`` entry point
(what Airflow loads by default) and ``plugins`` in the provider info (read when ``[core]
lazy_discover_providers`` is off; Airflow then notes that the second registration was skipped).
Importing this module is cheap: the app is built on the api-server's first request to it.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from linkai_provider.plugins.links import TranscriptsLink, base_path

PREFIX = "/linkai"
URL_ROUTE = "transcripts"  # the page inside Airflow's UI: {base}/plugin/transcripts


class LazyApp:
    """The page's FastAPI app as an ASGI callable built on its first request: Airflow imports plugins
    in every process (workers, scheduler), and only the api-server ever calls this."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from linkai_provider.plugins.app import create_app

                    self._app = create_app()
        await self._app(scope, receive, send)


class LinkAIPlugin(AirflowPlugin):
    """The Transcripts page (search, days, a run's transcripts) and its JSON API."""

    name = "linkai"
    fastapi_apps = [{"name": "linkai-transcripts", "app": LazyApp(), "url_prefix": PREFIX}]
    external_views = [
        {
            "name": "Transcripts",
            "href": f"{base_path()}{PREFIX}/",
            "destination": "nav",
            "url_route": URL_ROUTE,
            "nav_top_level": True,
            "icon": f"{base_path()}{PREFIX}/static/icon.svg",
            "icon_dark_mode": f"{base_path()}{PREFIX}/static/icon-dark.svg",
        }
    ]


__all__ = ["PREFIX", "URL_ROUTE", "LinkAIPlugin", "TranscriptsLink"]
