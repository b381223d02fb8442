"""Start a throw-away PostgreSQL server (tests, demos): initdb in a temp dir, 127.0.0.1, free port.

``initdb`` refuses to run as root, so when we are root the server runs as the ``postgres`` user
(``runuser -u postgres``). The server is stopped and its directory removed by :meth:`TempPostgres.stop`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from finllm.errors import ConfigError
from finllm.ports import free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    raise ConfigError(f"PostgreSQL's {name} not found: install PostgreSQL (Debian: apt-get install postgresql)")


@dataclass
class TempPostgres:
    datadir: Path
    port: int
    user: str | None  # OS user the server runs as (None = current user)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    @classmethod
    def start(cls, timeout_s: float = 30.0) -> "TempPostgres":
        root = Path(tempfile.mkdtemp(prefix="finllm-pg-"))
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(root, user=user)
        datadir, port = root / "data", free_port()
        pg = cls(datadir, port, user)
        subprocess.run(pg._cmd(_pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                               "-E", "UTF8", "--no-sync"), check=True, capture_output=True)
        subprocess.run(pg._cmd(_pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(root / "log"), "-w", "-t",
                               str(int(timeout_s)), "-o", f"-h 127.0.0.1 -p {port} -k {root} -F", "start"),
                       check=True, capture_output=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return pg
            except OSError:
                time.sleep(0.1)
        pg.stop()
        raise ConfigError(f"PostgreSQL did not start on port {port}; see {root / 'log'}")

    def stop(self) -> None:
        subprocess.run(self._cmd(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"),
                       capture_output=True)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)
