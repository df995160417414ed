"""``[core] hostname_callable`` of the stack test's Celery workers: each reports its own name, so the
test can tell which worker ran which task instance (both run on one machine, with one host name)."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("LINKAI_STACK_WORKER_NAME") or socket.getfqdn()
