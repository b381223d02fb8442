"""The embedded model server process: llama-cpp-python's OpenAI-compatible app under uvicorn.

Run as ``python -m finllm.llm.server_process --model GGUF --model-alias NAME --port P [--idle-s S
--lease-dir DIR]`` (``finllm.llm.server`` starts it; nobody needs to type this). Two things differ
from ``python -m llama_cpp.server``:

* the port is bound **before** the model is loaded, and a port already in use ends the process at once
  with exit code 3 and one line on stderr (``port 8765 is in use by another program; ...``);
* with ``--idle-s S > 0`` the server stops by itself once no finllm process holds a lease on it (see
  :mod:`finllm.llm.server`) and it has answered no request for S seconds, so a server started by one
  task keeps serving the next ones and still goes away when nobody uses it.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path

BIND_ERROR_EXIT = 3
WATCH_EVERY_S = 1.0

Scope = MutableMapping[str, object]
Receive = Callable[[], Awaitable[MutableMapping[str, object]]]
Send = Callable[[MutableMapping[str, object]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def port_in_use_message(port: int) -> str:
    return f"port {port} is in use by another program; set FINLLM_LLM_PORT to a free port"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); OSError(EADDRINUSE) when another program holds the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Activity:
    """ASGI wrapper that records when the last request ended and how many are in flight. Health probes
    (``GET /v1/models``, what every client sends first) do not count: a monitor polling the server must
    not keep it alive."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inflight = 0
        self.last = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or (scope.get("method"), scope.get("path")) == ("GET", "/v1/models"):
            await self.app(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            self.last = time.monotonic()


def watch_idle(server: object, activity: Activity, idle_s: float, lease_dir: Path) -> None:
    """Ask uvicorn to stop once nobody holds a lease and no request came for ``idle_s`` seconds."""
    from finllm.llm.server import live_leases

    while not getattr(server, "should_exit", False):
        time.sleep(WATCH_EVERY_S)
        if live_leases(lease_dir) > 0:
            activity.last = time.monotonic()  # the idle clock starts when the last client is gone
        elif activity.inflight == 0 and time.monotonic() - activity.last > idle_s:
            print(f"idle for {idle_s:.0f}s with no finllm process using it: stopping", file=sys.stderr, flush=True)
            server.should_exit = True  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m finllm.llm.server_process", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-alias", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--n-threads", type=int, default=1)
    ap.add_argument("--idle-s", type=float, default=0.0, help="0: never stop by itself")
    ap.add_argument("--lease-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(port_in_use_message(args.port), file=sys.stderr, flush=True)
            return BIND_ERROR_EXIT
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr, flush=True)
        return BIND_ERROR_EXIT

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    app = create_app(server_settings=ServerSettings(host=args.host, port=args.port),
                     model_settings=[ModelSettings(model=args.model, model_alias=args.model_alias,
                                                   n_ctx=args.n_ctx, n_threads=args.n_threads)])
    activity = Activity(app)
    server = uvicorn.Server(uvicorn.Config(activity, log_level="warning"))
    if args.idle_s > 0 and args.lease_dir is not None:
        threading.Thread(target=watch_idle, args=(server, activity, args.idle_s, args.lease_dir),
                         daemon=True).start()
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
