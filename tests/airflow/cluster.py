"""A real distributed Airflow on loopback, for the distributed test (test_distributed.py).

What runs, each as its own process group (so stopping one also stops the task processes it forked):
PostgreSQL (the session's server: one database for Airflow's metadata and Celery's results, one for
finllm's store), Redis (Debian's ``redis-server``, the Celery broker), ``airflow api-server`` (the task
execution API the workers talk to), ``airflow scheduler`` with the CeleryExecutor, ``airflow
dag-processor`` and two ``airflow celery worker`` processes: ``w1`` serves the ``default`` queue, ``w2``
the ``heavy`` queue that finllm's expensive tasks are routed to (``FINLLM_AIRFLOW_HEAVY_QUEUE``).
Both workers share one ``FINLLM_HOME`` (models, reports), as workers on several machines share a volume.

Each worker reports its own name as the host of the task instances it runs (``worker_name.py``), so a
test can see which worker ran what. The CLI calls are the ones a data engineer types (see the README's
deployment guide): ``db migrate``, ``dags reserialize``, ``pools set``, ``dags trigger``, ``tasks clear``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from finllm.ports import free_port

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
FINISHED = {"success", "failed"}
# The API key of the Airflow Connection "finllm_llm" (the local server ignores it): it must never be
# written to finllm's store or to a log.
LLM_KEY = "sk-finllm-test-" + secrets.token_hex(8)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class AirflowCluster:
    root: Path
    pg_admin_url: str  # a superuser URL on the session's PostgreSQL server (database "postgres")
    llm_url: str | None = None
    services: list[Service] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # ---- set-up ---------------------------------------------------------------------------------
    def _create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        self.databases.append(name)
        return self.pg_admin_url.rsplit("/", 1)[0] + "/" + name

    def configure(self) -> None:
        """Databases, ports and the environment shared by every Airflow process and CLI call."""
        airflow_url = self._create_database("airflow")
        self.finllm_url = self._create_database("finllm")
        self.redis_port, self.api_port = free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FINLLM_", "OPENAI_"))}
        redis = f"redis://127.0.0.1:{self.redis_port}"
        api = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **base,
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.airflow.worker_name.hostname",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": airflow_url.replace("+psycopg:", "+psycopg_async:"),
            "AIRFLOW__CELERY__BROKER_URL": f"{redis}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_url}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),  # shared: workers' tokens must verify
            # runs only when triggered: no scheduled run of "today" competes with the test's runs
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore",
            "FINLLM_HOME": str(self.root / "finllm"),
            "FINLLM_DATABASE_URL": self.finllm_url,
            "FINLLM_AIRFLOW_RETRIES": "0",
            "FINLLM_AIRFLOW_HEAVY_QUEUE": "heavy",
            "FINLLM_AIRFLOW_HEAVY_POOL": "finllm_heavy",
            "FINLLM_LLM_MAX_CALLS": "50",
            # no FINLLM_LLM_BASE_URL: the LLM tasks take the endpoint and key from the Connection below;
            # an embedded server would be started on this port (the test checks that none was)
            "FINLLM_LLM_PORT": str(free_port()),
        }
        if self.llm_url:
            self.env["AIRFLOW_CONN_FINLLM_LLM"] = json.dumps({
                "conn_type": "http", "host": self.llm_url, "password": LLM_KEY,
                "extra": {"model": "smollm2-135m-instruct"}})
        self.metadata = sa.create_engine(airflow_url, poolclass=sa.pool.NullPool)

    def airflow(self, *args: str, timeout: float = 180.0, check: bool = True) -> subprocess.CompletedProcess:
        """One Airflow CLI call in the cluster's environment."""
        out = subprocess.run([str(AIRFLOW), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, cwd=self.root)
        if check and out.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {out.returncode}:\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def spawn(self, name: str, args: list[str], extra_env: Mapping[str, str] | None = None) -> Service:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(args, env={**self.env, **(extra_env or {})}, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        svc = Service(name, proc, log)
        self.services.append(svc)
        return svc

    def start_redis(self, timeout: float = 20.0) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise AssertionError("redis-server not found: install it with scripts/system_deps.sh "
                                 "(Debian: apt-get install redis-server)")
        self.spawn("redis", [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(self.root)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"redis did not answer on port {self.redis_port}:\n{self.services[-1].tail()}")

    def start_airflow(self) -> None:
        """Scheduler, dag-processor, API server and the two workers (they start in parallel)."""
        af = str(AIRFLOW)
        self.spawn("api-server", [af, "api-server", "--port", str(self.api_port), "--host", "127.0.0.1",
                                  "--workers", "1"])
        self.spawn("scheduler", [af, "scheduler", "--skip-serve-logs"])
        self.spawn("dag-processor", [af, "dag-processor"])
        for name, queue, concurrency in (("w1", "default", "2"), ("w2", "heavy", "1")):
            self.spawn(name, [af, "celery", "worker", "-H", f"{name}@%h", "-q", queue, "-c", concurrency,
                              "--skip-serve-logs", "--without-gossip", "--without-mingle"],
                       extra_env={"FINLLM_TEST_WORKER_NAME": name})

    def api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    # ---- runs -----------------------------------------------------------------------------------
    def trigger(self, dag_id: str, run_id: str, logical_date: str, conf: Mapping[str, object]) -> None:
        self.airflow("dags", "trigger", dag_id, "-r", run_id, "-l", f"{logical_date}T00:00:00+00:00",
                     "-c", json.dumps(conf))

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        with self.metadata.connect() as c:
            return c.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                             {"d": dag_id, "r": run_id}).scalar()

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, object]]:
        """task_id -> {state, hostname, queue, pool, try_number} (unmapped tasks)."""
        with self.metadata.connect() as c:
            rows = c.execute(sa.text(
                "SELECT task_id, state, hostname, queue, pool, try_number FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r ORDER BY task_id"), {"d": dag_id, "r": run_id}).mappings().all()
        return {r["task_id"]: dict(r) for r in rows}

    def wait(self, runs: list[tuple[str, str]], timeout: float) -> dict[tuple[str, str], str]:
        """Poll until every (dag_id, run_id) is finished; fails at once when a service has died."""
        deadline = time.monotonic() + timeout
        states: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            states = {key: self.run_state(*key) for key in runs}
            if all(s in FINISHED for s in states.values()):
                return states
            for svc in self.services:
                if svc.proc.poll() is not None:
                    raise AssertionError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.tail()}")
            time.sleep(1.0)
        raise AssertionError(f"runs not finished after {timeout:.0f}s: {states}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        return "\n".join(f"--- {svc.name} ---\n{svc.tail(25)}" for svc in self.services)

    # ---- tear-down ------------------------------------------------------------------------------
    def stop(self) -> None:
        for svc in reversed(self.services):  # workers and scheduler first, Redis last
            if svc.proc.poll() is None:
                try:
                    os.killpg(svc.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for svc in reversed(self.services):
            try:
                svc.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group (forked task processes included)
                os.killpg(svc.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            svc.proc.wait(timeout=10)
        if hasattr(self, "metadata"):
            self.metadata.dispose()
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            for name in self.databases:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
