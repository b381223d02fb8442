"""The gateway: template -> messages -> OpenAI-compatible endpoint -> validated object or typed failure.

``Gateway.structured`` never raises: every problem (endpoint down, timeout, HTTP error, rate limit
after retries, invalid JSON after the repair rounds, budget exhausted, missing template variable)
comes back as a falsy :class:`LLMFailure` with a ``kind``:

========== ====================================================================================
kind       meaning
========== ====================================================================================
timeout    the request timed out on every try (``llm_timeout_s``)
connection nothing answered at the endpoint on every try
http       an HTTP error: 4xx (not retried) or 429/5xx still failing after the retries
invalid    the replies never validated against the schema after ``max_repairs`` repair rounds
budget     the run's call or token budget would be passed; no request was sent
template   unknown template or a variable missing from ``variables``
server     the embedded local server could not be started
internal   anything else (a bug): the message says what
========== ====================================================================================

Retries: 429 (waits at least ``Retry-After``), 5xx, timeouts and connection errors are retried up to
``max_retries`` times with exponential backoff and jitter. Each retry and repair round is one call
against the budget. ``attempts`` on results and failures = HTTP requests actually sent.

Grammars: ``structured(..., grammar=GBNF)`` sends the grammar in the request body's ``grammar`` field
(llama.cpp / llama-cpp-python servers decode under it, so the reply is in the language by construction;
no ``response_format`` is sent then, because llama-cpp-python would replace the grammar by the schema's).
An endpoint that rejects the field (an HTTP 400/422 naming ``grammar``) is remembered for this process and
asked again without it: the schema's ``response_format`` plus validate -> repair, as for any request.

Secrets: the API key and key-like strings are replaced by ``[redacted]`` in every reply, successful or
not, before it is validated, cached, recorded or returned (an endpoint may echo what it was sent).
The cache key includes the endpoint (base URL; ``embedded`` for the built-in server) and the grammar.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from finllm.config import Settings, load_settings
from finllm.errors import FinllmError
from finllm.llm import cache as cache_mod
from finllm.llm.budget import Budget
from finllm.llm.structured import MODES, repair_messages, response_format, schema_hint, schema_of, validate
from finllm.llm.templates import TemplateError, render_template

if TYPE_CHECKING:
    from openai import OpenAI

    from finllm.store.db import Store

_learned_modes: dict[str, str] = {}  # base_url -> response_format mode the server accepted
_no_grammar: set[str] = set()  # base URLs that rejected the ``grammar`` request field
_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._~+/=\-]+)")


@dataclass
class LLMResult:
    """A validated answer. ``value`` is an instance of the requested schema."""

    value: Any
    cached: bool
    usage: dict[str, int]
    latency_s: float
    attempts: int
    template: str = ""
    raw: str = ""

    def __bool__(self) -> bool:
        return True


@dataclass
class LLMFailure:
    """A typed failure (falsy). ``raw`` is the last model reply, if any (data, never executed)."""

    kind: str
    message: str
    attempts: int = 0
    status: int | None = None
    raw: str | None = None
    template: str = ""
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    latency_s: float = 0.0

    def __bool__(self) -> bool:
        return False


class _CallFailed(Exception):
    def __init__(self, failure: LLMFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``; None if absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", ""))) for m in messages) // 3 + 8 * len(messages)


class Gateway:
    """One endpoint + model, a budget, and (optionally) a store for the cache and usage rows."""

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None, run_id: str | None = None,
                 budget: Budget | None = None, base_url: str | None = None, mode: str = "auto",
                 max_retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 max_retry_after_s: float = 60.0, timeout_s: float | None = None,
                 template_dirs: list[str | Path] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings or load_settings()
        self.store, self.run_id = store, run_id
        self.budget = budget or Budget(self.settings.llm_max_calls, self.settings.llm_max_tokens)
        self.base_url = base_url or self.settings.llm_base_url  # None -> embedded server, lazily
        self.model = self.settings.llm_model
        self.embedded = self.base_url is None
        self.endpoint = "embedded" if self.embedded else str(self.base_url)  # identity in cache keys
        if mode != "auto" and mode not in MODES:
            raise ValueError(f"mode must be 'auto' or one of {MODES}")
        # llama-cpp-python rejects json_schema; it compiles {"type":"json_object","schema":...} instead.
        # A mode learned by an earlier gateway of this process for the same endpoint is reused.
        self._auto = mode == "auto"
        if self._auto:
            self._mode = "json_object_schema" if self.embedded else _learned_modes.get(self.base_url, "json_schema")
        else:
            self._mode = mode
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.timeout_s = timeout_s or self.settings.llm_timeout_s
        self.template_dirs = template_dirs
        self._sleep = sleep
        self._client: OpenAI | None = None
        self._client_error: LLMFailure | None = None
        self._lock = threading.Lock()
        self._usage = {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "failures": 0}

    # ---- plumbing -------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """Remove the API key (and anything key-like) from text that may be logged or stored."""
        key = self.settings.llm_api_key
        if key:
            text = text.replace(key, "[redacted]")
        return _KEYLIKE.sub("[redacted]", text)

    def _get_client(self) -> OpenAI:
        with self._lock:
            if self._client is not None:
                return self._client
            if self._client_error is not None:
                raise _CallFailed(self._client_error)
            try:
                from openai import OpenAI

                if self.base_url is None:
                    from finllm.llm.server import ensure_server

                    self.base_url = ensure_server(self.settings)
                self._client = OpenAI(base_url=self.base_url, api_key=self.settings.llm_api_key or "not-needed",
                                      timeout=self.timeout_s, max_retries=0)
            except FinllmError as exc:
                self._client_error = LLMFailure("server", self._scrub(str(exc)))
                raise _CallFailed(self._client_error) from None
            return self._client

    def _bump(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                self._usage[k] += v

    def _backoff(self, retry: int) -> float:
        d = min(self.max_backoff_s, self.backoff_s * (2 ** retry))
        return d / 2 + random.uniform(0, d / 2)

    @property
    def grammar_supported(self) -> bool:
        """False once this endpoint rejected the ``grammar`` field (then schemas + repair are used)."""
        return self.endpoint not in _no_grammar

    def _drop_grammar(self, message: str) -> bool:
        """If the endpoint rejected the ``grammar`` field, remember it; True if it did."""
        if "grammar" not in message.lower():
            return False
        with self._lock:
            _no_grammar.add(self.endpoint)
        return True

    def _downgrade(self, message: str) -> bool:
        """If the server rejected our response_format, move to the next mode; True if it did."""
        if not self._auto or "response_format" not in message:
            return False
        with self._lock:
            i = MODES.index(self._mode)
            if i + 1 >= len(MODES):
                return False
            self._mode = MODES[i + 1]
            _learned_modes[str(self.base_url)] = self._mode
            return True

    def _complete(self, messages: list[dict[str, Any]], schema: type[BaseModel], *, temperature: float,
                  max_tokens: int, seed: int | None, tally: dict[str, int],
                  grammar: str | None = None) -> tuple[str, str | None]:
        """One logical request with retries. Returns (content, finish_reason) or raises _CallFailed."""
        import openai

        client = self._get_client()
        retry = 0
        last: LLMFailure | None = None
        while True:
            est = _estimate_tokens(messages) + max_tokens
            why = self.budget.reserve(est)
            if why is not None:
                raise _CallFailed(LLMFailure("budget", why))
            mode = self._mode
            kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                      "max_tokens": max_tokens}
            with_grammar = grammar is not None and self.grammar_supported
            rf = None if with_grammar else response_format(mode, schema)
            if with_grammar:
                kwargs["extra_body"] = {"grammar": grammar}
            if rf is not None:
                kwargs["response_format"] = rf
            if seed is not None:
                kwargs["seed"] = seed
            tally["attempts"] += 1
            self._bump(calls=1)
            retryable, wait = False, None
            try:
                resp = client.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                self.budget.settle(est, 0)
                last = LLMFailure("timeout", f"no answer within {self.timeout_s:g}s from {self.base_url}")
                retryable = True
            except openai.APIConnectionError as exc:
                self.budget.settle(est, 0)
                last = LLMFailure("connection", f"cannot reach {self.base_url}: {exc}")
                retryable = True
            except openai.APIStatusError as exc:
                self.budget.settle(est, 0)
                msg = self._scrub(f"HTTP {exc.status_code} from {self.base_url}: {str(exc)[:500]}")
                if with_grammar and exc.status_code in (400, 422) and self._drop_grammar(str(exc)):
                    continue  # same request without the grammar field; not a retry
                if exc.status_code in (400, 422, 500) and self._downgrade(str(exc)):
                    continue  # same request in the next response_format mode; not a retry
                last = LLMFailure("http", msg, status=exc.status_code)
                retryable = exc.status_code == 429 or exc.status_code >= 500
                if exc.status_code == 429:
                    wait = _retry_after(exc.response.headers)
                    if wait is not None and wait > self.max_retry_after_s:
                        last.message += f" (Retry-After {wait:g}s is over the {self.max_retry_after_s:g}s cap)"
                        retryable = False
            except Exception as exc:  # malformed body, protocol errors: not retried
                self.budget.settle(est, 0)
                last = LLMFailure("http", self._scrub(f"bad response from {self.base_url}: "
                                                      f"{type(exc).__name__}: {str(exc)[:300]}"))
            else:
                if not hasattr(resp, "choices"):  # e.g. an HTML page with status 200: the SDK hands back text
                    self.budget.settle(est, 0)
                    raise _CallFailed(LLMFailure("http", self._scrub(
                        f"bad response from {self.base_url}: not a chat completion ({type(resp).__name__}: "
                        f"{str(resp)[:120]!r})")))
                u = resp.usage
                pt = int(getattr(u, "prompt_tokens", 0) or 0) if u else 0
                ct = int(getattr(u, "completion_tokens", 0) or 0) if u else 0
                self.budget.settle(est, pt + ct if u else est)
                tally["prompt_tokens"] += pt
                tally["completion_tokens"] += ct
                self._bump(prompt_tokens=pt, completion_tokens=ct)
                choice = resp.choices[0] if resp.choices else None
                if choice is None:
                    return "", None
                return self._scrub(choice.message.content or ""), choice.finish_reason
            if not retryable or retry >= self.max_retries:
                raise _CallFailed(last)
            delay = self._backoff(retry)
            if wait is not None:
                delay = max(delay, wait)
            self._sleep(delay)
            retry += 1

    # ---- public API -----------------------------------------------------------------------------
    def connect(self) -> str:
        """Get the endpoint ready now (starts the embedded server if needed); returns its base URL.

        Optional: ``structured`` does this lazily. Raises ConfigError when the server cannot start.
        """
        from finllm.errors import ConfigError

        try:
            self._get_client()
        except _CallFailed as exc:
            raise ConfigError(exc.failure.message) from None
        return str(self.base_url)

    def probe(self, timeout_s: float = 10.0) -> LLMFailure | None:
        """A cheap check that the endpoint answers and serves ``model`` (``GET /models``; starts the
        embedded server if needed). None when usable or when the endpoint cannot tell (no /models route);
        else a failure: ``server``, ``connection``, ``timeout``, ``http`` (401/403) or ``model``."""
        import openai

        try:
            client = self._get_client()
            listed = [m.id for m in client.with_options(timeout=timeout_s, max_retries=0).models.list()]
        except _CallFailed as exc:
            return exc.failure
        except openai.APITimeoutError:
            return LLMFailure("timeout", f"no answer within {timeout_s:g}s from {self.base_url}")
        except openai.APIConnectionError as exc:
            return LLMFailure("connection", self._scrub(f"cannot reach {self.base_url}: {exc}"))
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                return LLMFailure("http", self._scrub(f"HTTP {exc.status_code} from {self.base_url}: "
                                                      f"{str(exc)[:200]}"), status=exc.status_code)
            return None  # e.g. 404: no /models route here; the first real request will tell
        except Exception:  # a body that is not a model list: inconclusive
            return None
        if listed and self.model not in listed:
            shown = ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else "")
            return LLMFailure("model", f"{self.base_url} does not serve model {self.model!r} (it serves {shown})")
        return None

    def structured(self, template: str, variables: dict[str, Any], schema: type[BaseModel], *,
                   temperature: float = 0.0, max_tokens: int = 256, use_cache: bool = True,
                   max_repairs: int = 2, sample: int | None = None,
                   grammar: str | None = None) -> LLMResult | LLMFailure:
        """Render ``template`` with ``variables``, ask for JSON fitting ``schema``, validate.

        ``sample`` (self-consistency) makes the k-th sample a distinct cache entry and seeds it.
        ``grammar``: a GBNF grammar whose language is JSON fitting ``schema``; endpoints that take it
        decode under it, the others fall back to ``response_format`` + validate -> repair.
        """
        t0 = time.monotonic()
        tally = {"attempts": 0, "prompt_tokens": 0, "completion_tokens": 0}
        tid, version, key, raw = template, "", "", None
        try:
            try:
                prompt = render_template(template, variables, extra_dirs=self.template_dirs)
            except TemplateError as exc:
                raise _CallFailed(LLMFailure("template", str(exc))) from None
            tid, version = prompt.template_id, prompt.version
            system = f"{prompt.system}\n\n{schema_hint(schema)}"
            sampling = {"temperature": temperature, "max_tokens": max_tokens, "sample": sample}
            key = cache_mod.cache_key(model=self.model, template_id=tid, version=version, system=system,
                                      user=prompt.user, schema=schema_of(schema), sampling=sampling,
                                      endpoint=self.endpoint, grammar=grammar)
            if use_cache and self.store is not None:
                hit = cache_mod.cache_get(self.store, key)
                hit = None if hit is None else self._scrub(hit)  # rows written before scrubbing existed
                value, _ = validate(hit, schema) if hit is not None else (None, None)
                if value is not None:
                    self._bump(cached=1)
                    res = LLMResult(value, True, {"prompt_tokens": 0, "completion_tokens": 0},
                                    time.monotonic() - t0, 0, f"{tid}.{version}", hit or "")
                    self._record(res, tid, version, key, "ok", None)
                    return res
            messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                              {"role": "user", "content": prompt.user}]
            seed = None if sample is None else int(sample)
            error, cut = "", False
            for _round in range(max_repairs + 1):
                raw, finish = self._complete(messages, schema, temperature=temperature,
                                             max_tokens=max_tokens, seed=seed, tally=tally, grammar=grammar)
                value, error = validate(raw, schema)
                if value is not None:
                    canonical = value.model_dump_json()
                    if self.store is not None:
                        cache_mod.cache_put(self.store, key, model=self.model, template_id=tid,
                                            version=version, response=canonical)
                    res = LLMResult(value, False, _usage(tally), time.monotonic() - t0, tally["attempts"],
                                    f"{tid}.{version}", raw)
                    self._record(res, tid, version, key, "ok", None)
                    return res
                cut = finish == "length"
                to_model = error + (f" (the reply was cut off at max_tokens={max_tokens}; answer more briefly)"
                                    if cut else "")
                messages = messages + repair_messages(raw, to_model, schema)
            why = f" (the model's reply was cut off at max_tokens={max_tokens})" if cut else ""
            raise _CallFailed(LLMFailure("invalid", f"the model {self.model!r} gave no answer in the expected "
                                                    f"format after {max_repairs} repair round(s): {error}{why}",
                                         raw=raw))
        except _CallFailed as exc:
            fail = exc.failure
        except Exception as exc:  # never raise from inside structured
            fail = LLMFailure("internal", self._scrub(f"{type(exc).__name__}: {exc}"))
        fail = LLMFailure(fail.kind, self._scrub(fail.message), tally["attempts"], fail.status,
                          fail.raw if fail.raw is not None else raw, f"{tid}.{version}" if version else tid,
                          _usage(tally), time.monotonic() - t0)
        self._bump(failures=1)
        self._record(fail, tid, version, key, fail.kind, fail.message)
        return fail

    def _record(self, res: LLMResult | LLMFailure, tid: str, version: str, key: str, status: str,
                error: str | None) -> None:
        if self.store is None:
            return
        try:
            cache_mod.record_call(self.store, run_id=self.run_id, template_id=tid[:100], template_version=version,
                                  model=self.model[:200], cache_key=key, cached=bool(getattr(res, "cached", False)),
                                  status=status, attempts=res.attempts, prompt_tokens=res.usage["prompt_tokens"],
                                  completion_tokens=res.usage["completion_tokens"],
                                  latency_ms=res.latency_s * 1000.0, error=error)
        except Exception:  # usage rows must never break the caller
            pass

    def structured_many(self, requests: list[dict[str, Any]], *, concurrency: int | None = None,
                        progress: bool = False) -> list[LLMResult | LLMFailure]:
        """Run many ``structured`` calls (each dict holds its keyword arguments), at most
        ``concurrency`` (default ``llm_concurrency``) at a time; results keep the input order."""
        workers = max(1, concurrency or self.settings.llm_concurrency)

        def one(req: dict[str, Any]) -> LLMResult | LLMFailure:
            try:
                return self.structured(**req)
            except Exception as exc:  # e.g. a bad keyword in the request dict
                return LLMFailure("internal", f"bad request {sorted(req)}: {exc}")

        if not requests:
            return []
        if workers == 1 or len(requests) == 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            futures = [pool.submit(one, r) for r in requests]
            if progress:
                from rich.console import Console
                from rich.progress import Progress

                with Progress(console=Console(stderr=True), transient=True) as bar:  # stdout stays clean for --json
                    task = bar.add_task("LLM requests", total=len(futures))
                    for f in futures:
                        f.result()
                        bar.advance(task)
            return [f.result() for f in futures]

    def self_consistency(self, template: str, variables: dict[str, Any], schema: type[BaseModel], *,
                         n: int = 5, aggregate: Callable[[list[Any]], Any] | None = None,
                         temperature: float = 0.7, max_tokens: int = 256, use_cache: bool = True,
                         max_repairs: int = 1) -> tuple[Any, float, list[LLMResult | LLMFailure]]:
        """Sample ``n`` answers (distinct seeds, one request each: llama-cpp-python ignores ``n``)
        and aggregate them; see :mod:`finllm.llm.consistency` for the default rule and agreement."""
        from finllm.llm.consistency import aggregate_samples

        reqs = [dict(template=template, variables=variables, schema=schema, temperature=temperature,
                     max_tokens=max_tokens, use_cache=use_cache, max_repairs=max_repairs, sample=k)
                for k in range(n)]
        samples = self.structured_many(reqs)
        value, agreement = aggregate_samples([s.value for s in samples if s], n, schema, aggregate)
        return value, agreement, samples

    def usage(self) -> dict[str, int]:
        """This gateway's counters: HTTP calls, cache hits, tokens, failed ``structured`` calls."""
        with self._lock:
            return dict(self._usage)


def _usage(tally: dict[str, int]) -> dict[str, int]:
    return {"prompt_tokens": tally["prompt_tokens"], "completion_tokens": tally["completion_tokens"]}


_run_budgets: dict[str, Budget] = {}
_default_stores: dict[str, Any] = {}  # database_url -> Store opened (and migrated) once per process
_run_lock = threading.Lock()


def get_gateway(*, run_id: str | None = None, store: Store | None = None, settings: Settings | None = None,
                budget: Budget | None = None, **kwargs: Any) -> Gateway:
    """The gateway for a run. ``store`` defaults to the configured database (cache + usage rows).

    Without an explicit ``budget`` every gateway of the same ``run_id`` in this process shares one
    Budget of ``llm_max_calls``/``llm_max_tokens``, which starts from what earlier processes of that
    run already spent (summed from the ``llm_calls`` table). With no endpoint configured the embedded
    server is started on the first uncached request (a fully cached re-run never starts it).
    """
    settings = settings or load_settings()
    if store is None:
        with _run_lock:
            store = _default_stores.get(settings.database_url)
            if store is None:
                from finllm.store import open_store

                store = _default_stores[settings.database_url] = open_store(settings=settings)
    if budget is None and run_id is not None:
        with _run_lock:
            budget = _run_budgets.get(run_id)
            if budget is None:
                spent = cache_mod.run_usage(store, run_id)
                budget = Budget(settings.llm_max_calls, settings.llm_max_tokens,
                                used_calls=spent["calls"], used_tokens=spent["tokens"])
                _run_budgets[run_id] = budget
    return Gateway(settings, store=store, run_id=run_id, budget=budget, **kwargs)


def describe(settings: Settings) -> dict[str, Any]:
    """Where requests go (safe to print: no key)."""
    return {"base_url": settings.llm_base_url or f"embedded http://127.0.0.1:{settings.llm_port}/v1",
            "model": settings.llm_model, "api_key_set": settings.llm_api_key is not None,
            "timeout_s": settings.llm_timeout_s}


__all__ = ["Gateway", "LLMFailure", "LLMResult", "get_gateway", "describe"]
