"""TEST HOOK: deterministic fault injection for the crash and concurrency tests.

Production code calls :func:`fault_point` at a few named moments (after an ingest batch is
committed, inside an index save). Unless the environment variable ``LOOKALIKE_TEST_FAULT`` is set
it does nothing (one dictionary lookup at import time, one ``is None`` test per call).

``LOOKALIKE_TEST_FAULT=POINT:N:ACTION``, at the N-th time POINT is reached (1-based):

* ``kill``        the process kills itself with SIGKILL (as ``kill -9`` would);
* ``wait=PATH``   it creates ``PATH.reached`` and waits (at most 120 s) until ``PATH`` exists,
                  so a test can act at exactly that moment and then let the process go on.

Points: ``ingest-batch-committed``, ``put-images-before-commit``, ``index-save-before-rename``,
``index-save-between-renames``.
"""

from __future__ import annotations

import os
import signal
import threading
import time

FAULT_ENV = "LOOKALIKE_TEST_FAULT"

_spec = os.environ.get(FAULT_ENV) or None
_hits: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(name: str) -> None:
    if _spec is None:
        return
    point, _, rest = _spec.partition(":")
    if point != name:
        return
    count, _, action = rest.partition(":")
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != int(count or 1):
            return
    if action == "kill" or not action:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)             # never reached: SIGKILL cannot be handled
    elif action.startswith("wait="):
        path = action[len("wait="):]
        with open(path + ".reached", "w"):
            pass
        deadline = time.monotonic() + 120
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
