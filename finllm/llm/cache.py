"""Response cache and usage records in the store (tables ``llm_cache`` and ``llm_calls``).

The cache key hashes everything that decides the answer: the endpoint (base URL, or ``embedded``),
model, template id + version, the rendered system and user messages, the JSON schema, the GBNF grammar
(if any), and the sampling parameters (temperature, max_tokens, sample index for self-consistency).
A different endpoint serving a model of the same name never gets another endpoint's answers. Only validated responses are cached, so a re-run of the same
work costs zero calls.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from finllm.store.tables import LLMCache, LLMCall

if TYPE_CHECKING:
    from finllm.store.db import Store

_write_lock = threading.Lock()  # SQLite allows one writer; serialise this process's writes


def cache_key(*, model: str, template_id: str, version: str, system: str, user: str,
              schema: dict, sampling: dict, endpoint: str = "", grammar: str | None = None) -> str:
    """sha256 hex of everything that decides the answer (see the module docstring)."""
    payload = {"endpoint": endpoint, "model": model, "template": f"{template_id}.{version}", "system": system,
               "user": user, "schema": schema, "sampling": sampling, "grammar": grammar}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_get(store: Store, key: str) -> str | None:
    with store.session() as s:
        row = s.get(LLMCache, key)
        return None if row is None else row.response


def cache_put(store: Store, key: str, *, model: str, template_id: str, version: str, response: str) -> None:
    with _write_lock, store.session() as s:
        row = s.get(LLMCache, key)
        if row is None:
            s.add(LLMCache(key=key, model=model, template_id=template_id, template_version=version,
                           response=response))
        else:
            row.response = response


def record_call(store: Store, **cols: Any) -> None:
    """One LLMCall row per ``structured`` request (retries/repairs counted in ``attempts``)."""
    with _write_lock, store.session() as s:
        s.add(LLMCall(**cols))


def run_usage(store: Store, run_id: str) -> dict[str, int]:
    """Calls and tokens already spent by ``run_id`` (all processes), for budgets that resume."""
    with store.session() as s:
        calls, prompt, completion = s.execute(
            select(func.coalesce(func.sum(LLMCall.attempts), 0),
                   func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                   func.coalesce(func.sum(LLMCall.completion_tokens), 0))
            .where(LLMCall.run_id == run_id, LLMCall.cached.is_(False))).one()
    return {"calls": int(calls), "tokens": int(prompt) + int(completion)}
