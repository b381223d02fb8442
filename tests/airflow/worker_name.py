"""``[core] hostname_callable`` for the distributed test: two Celery workers run on one machine, so
each reports the name it was started with (``FINLLM_TEST_WORKER_NAME``) as the host of the task
instances it runs; processes without the variable report the machine's name as usual."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("FINLLM_TEST_WORKER_NAME") or socket.getfqdn()
