"""A ``[core] hostname_callable`` for several Celery workers on one host.

Airflow records the host name a task instance ran on (``hostname_callable``, by default
``airflow.utils.net.getfqdn``): the UI shows it, and the api-server fetches a *running* task's log
from ``http://<hostname>:<[logging] worker_log_server_port>``. Two workers on one host report the same
name, so nobody can tell which of them ran what. Set on every component::

    AIRFLOW__CORE__HOSTNAME_CALLABLE=linkai_provider.hostname.worker_name

and on each worker its own name, e.g. ``LINKAI_WORKER_NAME=worker2``. A worker without the variable
(and every other component) reports the fully qualified host name, as Airflow would.

What the name costs: it does not resolve, so the api-server cannot fetch a running task's log from
that worker's log server. With several workers on one host their log-server ports differ anyway, and
the api-server asks every worker on its own configured port, so running-task logs need a shared log
folder (the api-server then reads the files itself, finished or not) or remote logging either way.
"""

from __future__ import annotations

import os
import socket

ENV = "LINKAI_WORKER_NAME"


def worker_name() -> str:
    """``$LINKAI_WORKER_NAME`` when set (stripped), else the fully qualified host name."""
    return os.environ.get(ENV, "").strip() or socket.getfqdn()


__all__ = ["ENV", "worker_name"]
