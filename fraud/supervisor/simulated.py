"""A verdict source of known quality: an OpenAI-compatible endpoint on loopback that is NOT an LLM.

It answers the question users ask before they buy an endpoint: how good must the LLM be for the
supervisor to pay off? ``finllm fraud train ... --supervisor simulated --simulated-auroc Q`` starts it;
the supervisor talks to it through the normal gateway (HTTP, schema validation, cache, budget) exactly
as to a real LLM. Server-side, it reads the target's node id from the prompt ("Target account n123")
and draws a verdict from that node's TRUE label:

* verdict evidence ``z ~ N(mu * y, 1)`` with ``mu = sqrt(2) * Phi^-1(Q)``, so the verdicts' AUROC
  against the true labels is ``Q`` in expectation; ``z`` is fixed per (seed, node) (asking twice gives
  the same answer) and drawn independently of the detector's score;
* ``fraud_probability = sigmoid(k * (z - mu / 2))`` with ``k = max(mu, 1)``: for Q >= 0.76 (mu >= 1)
  that is the exact posterior under a balanced prior, i.e. a calibrated confidence; below, the
  confidences are those of a source with separation 1, i.e. overconfident like a weak LLM (a calibrated
  Q = 0.5 source would answer 0.50 for every node, which no real endpoint does); two decimals, as the
  schema asks;
* a node without a label (y = -1) gets an uninformative verdict (0.50, confidence 0.00): the simulator
  has no truth to draw from;
* ``suspicious_neighbors`` is always empty (the simulator judges nodes, not edges), and every rationale
  says "SIMULATED".

``source="echo"`` answers with the given detector scores instead (a source that only repeats what the
detector already knows: the case the added-information calibration must stop early on).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from scipy.stats import norm

TARGET = re.compile(r"Target account n(\d+)")


def separation(q: float) -> float:
    """Mean shift ``mu`` of unit-variance normal evidence whose AUROC is ``q``: Phi(mu / sqrt 2) = q."""
    return float(math.sqrt(2.0) * norm.ppf(q))


def evidence(node: int, y: int, q: float, seed: int) -> float:
    """The verdict evidence ``z ~ N(mu * y, 1)`` of ``node`` (fixed per (seed, node)); ``y`` in {0, 1}."""
    return float(np.random.default_rng([int(seed), int(node)]).standard_normal()) + separation(q) * y


def exact_llr(node: int, y: int, q: float, seed: int) -> float:
    """log P(z | fraud) / P(z | normal) of ``node``'s verdict evidence: what a perfectly calibrated reader of
    the verdict would know. Only a bench's ceiling may use it (it needs the simulator's internals)."""
    mu = separation(q)
    return mu * (evidence(node, y, q, seed) - mu / 2.0)


def verdict_for(node: int, y: int, q: float, seed: int) -> dict[str, Any]:
    """The simulated verdict (a FraudVerdict-shaped dict) for ``node`` with true label ``y`` in {-1,0,1}."""
    if y < 0:
        p = 0.5
    else:
        mu = separation(q)
        llr = max(mu, 1.0) * (evidence(node, y, q, seed) - mu / 2.0)
        p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, llr))))
    return _answer(p, f"SIMULATED verdict (AUROC {q:g}) drawn from the true label; not an LLM"
                   if y >= 0 else "SIMULATED verdict: no true label for this node, so no information")


def _answer(p: float, rationale: str) -> dict[str, Any]:
    p = round(min(1.0, max(0.0, p)), 2)
    return {"rationale": rationale, "label": "fraud" if p >= 0.5 else "normal", "fraud_probability": f"{p:.2f}",
            "confidence": f"{abs(2 * p - 1):.2f}", "suspicious_neighbors": []}


class SimulatedVerdictServer:
    """Threaded loopback HTTP server speaking the OpenAI chat-completions protocol.

    ``labels`` (N,) true labels in {-1, 0, 1} (server-side only); ``auroc`` the verdicts' AUROC Q;
    ``echo_scores`` (N,) with ``source="echo"``. Use as a context manager, or ``start()`` / ``close()``.
    """

    def __init__(self, labels: np.ndarray, auroc: float, *, seed: int = 0, source: str = "simulated",
                 echo_scores: np.ndarray | None = None) -> None:
        if source not in ("simulated", "echo"):
            raise ValueError(f"source must be 'simulated' or 'echo', got {source!r}")
        if source == "echo" and echo_scores is None:
            raise ValueError("source='echo' needs echo_scores")
        if not 0.0 < float(auroc) < 1.0:
            raise ValueError(f"simulated AUROC must be strictly between 0 and 1, got {auroc}")
        self.labels = np.asarray(labels).astype(int)
        self.auroc, self.seed, self.source = float(auroc), int(seed), source
        self.echo_scores = None if echo_scores is None else np.asarray(echo_scores, float)
        self.requests = 0
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def model(self) -> str:
        """The model name the gateway sends (and caches under): never mistaken for a real model."""
        if self.source == "echo":
            return "echo-of-detector-score"
        return f"simulated-auroc-{self.auroc:g}-seed-{self.seed}"

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, text: str) -> dict[str, Any]:
        """The verdict for a prompt text (the node id is read from it)."""
        m = TARGET.search(text)
        if m is None or not 0 <= int(m.group(1)) < self.labels.size:
            return _answer(0.5, f"SIMULATED: no known target account in the prompt, so no information")
        node = int(m.group(1))
        if self.source == "echo":
            return _answer(float(self.echo_scores[node]), "ECHO of the detector's own score; not an LLM")
        return verdict_for(node, int(self.labels[node]), self.auroc, self.seed)

    def start(self) -> SimulatedVerdictServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # /v1/models
                self._send(200, {"object": "list", "data": [{"id": outer.model, "object": "model"}]})

            def do_POST(self) -> None:  # /v1/chat/completions
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    user = " ".join(str(m.get("content", "")) for m in body.get("messages", [])
                                    if m.get("role") == "user")
                except (ValueError, AttributeError) as exc:
                    self._send(400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request"}})
                    return
                with outer._lock:
                    outer.requests += 1
                content = json.dumps(outer.answer(user))
                self._send(200, {"id": "chatcmpl-simulated", "object": "chat.completion", "created": int(time.time()),
                                 "model": outer.model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": len(content) // 4,
                                           "total_tokens": (len(user) + len(content)) // 4}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True,
                                        name="simulated-verdicts")
        self._thread.start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> SimulatedVerdictServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What every output and run record says about this source."""
        if self.source == "echo":
            return {"kind": "echo", "note": "ECHO source: verdicts repeat the detector's own score; not an LLM"}
        return {"kind": "simulated", "auroc": self.auroc, "seed": self.seed,
                "note": f"SIMULATED verdict source: drawn from the true labels with AUROC {self.auroc:g}, "
                        "independently of the detector's score; not an LLM"}


__all__ = ["SimulatedVerdictServer", "evidence", "exact_llr", "separation", "verdict_for"]
