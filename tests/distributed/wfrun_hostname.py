"""``[core] hostname_callable`` for the distributed tier: each component's name as its host name.

Two triggerers and two Celery workers share one machine here; with their names as host names, the
metadata database says which triggerer holds a trigger and which worker ran a task try.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("WFRUN_COMPONENT") or socket.getfqdn()
