"""A clock the stack test can move, in every Python process of the deployment (on PYTHONPATH there).

``$LINKAI_STACK_CLOCK`` names a file holding an offset in seconds from the real time. While it is 0
(the default) nothing is patched. When the test writes another offset, every process moves its wall
clock (``time.time``, ``datetime.now``, ... through time-machine, ticking at the real rate) within a
tenth of a second; the monotonic clock, and with it every sleep and timeout, stays real. Processes
forked later (Celery's pool, the task runner's task process) inherit the clock and watch the file too;
processes started later read it when they start. The database's ``now()`` is moved by the test itself
(``Stack.shift_clock``), because the scheduler asks Postgres, not Python, whether a run is due.
"""

from __future__ import annotations

import os
import threading
import time

CLOCK = os.environ.get("LINKAI_STACK_CLOCK")
_state: dict = {"offset": 0.0, "traveller": None, "seen": None}


def _apply() -> None:
    try:
        stat = os.stat(CLOCK)  # type: ignore[arg-type]
    except OSError:
        return
    if stat.st_mtime_ns == _state["seen"]:
        return
    with open(CLOCK) as f:  # type: ignore[arg-type]
        offset = float(f.read().strip() or 0)
    if offset != _state["offset"]:
        if _state["traveller"] is None:
            _state["traveller"] = time_machine.travel(time.time() + offset, tick=True).start()
        else:
            _state["traveller"].move_to(time_machine.escape_hatch.time.time() + offset)
        # The clock ticks from start(), not from when the destination was computed: another thread
        # holding the GIL in between would leave it behind by as long. Measure and take that back.
        lag = min(offset - (time.time() - time_machine.escape_hatch.time.time()) for _ in range(3))
        _state["traveller"].shift(lag)
        _state["offset"] = offset
    _state["seen"] = stat.st_mtime_ns  # only once applied: a failed read is tried again


def _watch() -> None:
    while True:
        try:
            _apply()
        except Exception:  # never take the process down for the test's clock; tried again
            pass
        time.sleep(0.1)


def _start_watching() -> None:
    threading.Thread(target=_watch, name="linkai-stack-clock", daemon=True).start()


if CLOCK:
    # imported here, in the main thread: a fork while a watcher thread imports it would leave the
    # child waiting forever on the module's import lock
    import time_machine

    _apply()
    _start_watching()
    os.register_at_fork(after_in_child=_start_watching)
