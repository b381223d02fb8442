"""Natural-language factor requests: an analyst's idea -> candidate formulas -> checked -> scored -> saved.

Every request yields valid, scored factors that use what it names:

1. **Read the request** (:mod:`factors.request_intent`, code, no LLM): the fields, windows and concepts it
   names. The relevance rule: a formula must use every field named, one of the windows named, and satisfy
   every concept named (e.g. volatility = Std, Var or Mad).
2. **Retrieve examples**: the library factors most similar to the request (same rule, as a share of its
   parts), topped up with built-in known formulas on the same concepts (:mod:`factors.request_pool`).
3. **Propose under the grammar** (:mod:`factors.request_llm`, :mod:`factors.grammar`): the LLM writes
   ``n`` formulas decoded under a GBNF grammar built from the operator registry, so on llama.cpp servers
   (the embedded model included) every formula parses and type-checks by construction. Endpoints without
   grammar support are parsed and repaired with the parser's exact error (``repair_rounds``).
4. **Score** each candidate with the evaluator on train and valid only (IC, RankIC, turnover, coverage);
   the test split is never shown to the LLM nor used for a choice, and is measured only for saved factors.
5. **Refine**: the scores go back to the LLM for ``refine_rounds`` more rounds; a candidate whose *train*
   RankIC is negative also gets its sign-flipped twin (the sign is chosen on train).
6. **Fallback**: the built-in formulas for the named concepts/fields/windows are scored alongside (source
   ``fallback``), so an empty library, a useless model or ``use_llm=False`` still gives an on-topic factor.
7. **Save** the best ``n_save`` (relevant first, then valid RankIC) with lineage: request, source (``llm`` or
   ``fallback``), model and endpoint, stage, train/valid/test scores; the explanation is written by code.

An endpoint that cannot be used (down, not starting, timing out, 401/403/404) raises
:class:`factors.request_llm.LLMUnavailable` (a ConfigError naming FINLLM_LLM_BASE_URL / FINLLM_LLM_MODEL).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factors.expr import Expr
from factors.grammar import DEFAULT_DEPTH
from factors.request_intent import Intent, check_relevance, read_intent, similarity, usage
from factors.request_llm import (LLMUnavailable, Proposal, clean_formula, grammar_for, names_text, render_grammar,
                                 short_language, unusable_endpoint)
from factors.request_pool import examples as builtin_examples
from factors.request_pool import fallback_pool
from factors.scoring import SplitScorer
from finllm.errors import ConfigError, FinllmError
from finllm.jsonsafe import json_safe

if TYPE_CHECKING:
    from factors.panel import Panel
    from factors.splits import Split
    from finllm.llm.client import Gateway
    from finllm.store.db import RunHandle, Store

MAX_SCORED_SHOWN = 6
MAX_FAILED_SHOWN = 3
MAX_SIGN_FLIPS = 3


@dataclass
class Candidate:
    """One formula (from the LLM or the built-in pool), what the parser said and what the evaluator measured."""

    formula: str
    source: str  # llm | fallback
    stage: str  # propose | repair | refine | sign | builtin
    round: int
    expr: Expr | None = None
    error: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics
    note: str | None = None
    repaired_from: str | None = None
    factor_id: str | None = None
    missing: list[str] = field(default_factory=list)  # what it misses of the request (relevance rule)
    concepts: tuple[str, ...] = ()
    explanation: str = ""  # written by code when saved

    @property
    def ok(self) -> bool:
        return self.expr is not None and self.error is None

    @property
    def relevant(self) -> bool:
        return self.ok and not self.missing

    @property
    def objective(self) -> float:
        v = self.scores.get("valid", {}).get("rank_ic", float("nan"))
        return v if isinstance(v, float) and math.isfinite(v) else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"formula": self.formula, "canonical": self.expr.infix if self.expr is not None else None,
                "tokens": list(self.expr.tokens) if self.expr is not None else None, "source": self.source,
                "stage": self.stage, "round": self.round, "error": self.error, "scores": self.scores,
                "note": self.note, "repaired_from": self.repaired_from, "factor_id": self.factor_id,
                "relevant": self.relevant, "missing": self.missing, "concepts": list(self.concepts),
                "explanation": self.explanation}


@dataclass
class AskResult:
    """Everything an ``ask`` did. ``status``: ok | no_valid_formula | no_usable_factor."""

    request: str
    status: str
    message: str
    candidates: list[Candidate]
    saved: list[Candidate]
    llm_calls: int
    llm_failures: list[str]
    run_id: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    intent: Intent | None = None
    llm: dict[str, Any] = field(default_factory=dict)  # model, endpoint, grammar, used, usable
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def grammar_errors(self) -> list[dict[str, str]]:
        return [{"formula": c.formula, "error": c.error} for c in self.candidates if c.error]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"request": self.request, "status": self.status, "message": self.message,
                          "run_id": self.run_id, "splits": self.splits,
                          "intent": self.intent.to_dict() if self.intent else None, "llm": self.llm,
                          "llm_calls": self.llm_calls, "llm_failures": self.llm_failures,
                          "seconds": round(self.seconds, 2), "saved": [c.to_dict() for c in self.saved],
                          "candidates": [c.to_dict() for c in self.candidates], "grammar_errors": self.grammar_errors})


def default_splits(dates: np.ndarray, source: str | None = None) -> dict[str, str]:
    """The train / valid / test ranges of ``factors eval`` and ``factors mine`` (one rule,
    :func:`factors.splits.default_splits`): the documented split on the shipped US file (``source``),
    60 / 20 / 20 of the panel's dates by time elsewhere."""
    from factors.splits import default_splits as split_rule

    return {sp.name: sp.text() for sp in split_rule(dates, source)}


def _as_splits(splits: Mapping[str, str] | Sequence[Split] | None, dates: np.ndarray) -> list[Split]:
    from factors.splits import parse_splits

    if splits is None:
        splits = default_splits(dates)
    if isinstance(splits, Mapping):
        unknown = set(splits) - {"train", "valid", "test"}
        if unknown:
            raise ConfigError(f"unknown split name(s) {sorted(unknown)}: use train, valid, test")
        out = parse_splits(splits.get("train"), splits.get("valid"), splits.get("test"))
    else:
        out = list(splits)
    names = [s.name for s in out]
    if names[:2] != ["train", "valid"]:
        raise ConfigError(f"factor requests need train and valid splits (got {names})")
    return out


RequestScorer = SplitScorer  # the name bench/bench_requests.py and earlier versions use
_Scorer = SplitScorer


def retrieve_examples(store: Store | None, intent: Intent, features: Sequence[str], k: int = 4) -> list[dict[str, str]]:
    """Up to ``k`` prompt examples ``{idea, formula}``: the library factors most similar to the request
    (share of its fields/windows/concepts they cover, then valid RankIC), then built-in formulas."""
    from factors.expr import parse

    found: list[tuple[float, float, str]] = []
    if store is not None and k > 0:
        for f in store.factors():
            try:
                e = parse(f.formula, features=features)
            except FinllmError:
                continue  # a field this panel lacks
            sim = similarity(e, intent)
            if sim > 0 or not intent.named:
                ric = ((f.metrics or {}).get("valid") or {}).get("rank_ic")
                ric = ric if isinstance(ric, (int, float)) and math.isfinite(ric) else -1.0
                found.append((sim, float(ric), e.infix))
    found.sort(reverse=True)
    seen, out = set(), []
    for sim, ric, formula in found:
        if formula not in seen and len(out) < k:
            seen.add(formula)
            out.append({"idea": f"library factor, covers {sim:.0%} of the request, valid RankIC {ric:.3f}",
                        "formula": formula})
    for ex in builtin_examples(intent, features, n=k):
        if ex["formula"] not in seen and len(out) < k:
            seen.add(ex["formula"])
            out.append({"idea": f"known {ex['idea']} formula", "formula": ex["formula"]})
    return out


class _Session:
    """The candidates of one request and the LLM calls that made them."""

    def __init__(self, request: str, intent: Intent, scorer: SplitScorer, gateway: Gateway | None, n: int, repair_rounds: int,
                 max_tokens: int | None, max_depth: int) -> None:
        self.request, self.intent, self.scorer, self.gw = request, intent, scorer, gateway
        self.n, self.repair_rounds, self.max_depth = n, repair_rounds, max_depth
        self.max_tokens = max_tokens
        self.features = list(scorer.ev.features)
        # under a grammar the model cannot leave the language: a short reminder is enough (short prompts are
        # most of the latency of a small CPU model); otherwise the full operator list
        self.language = (short_language(self.features) if gateway is not None and gateway.grammar_supported
                         else render_grammar(self.features))
        self.names = names_text(intent)
        self.candidates: list[Candidate] = []
        self.failures: list[str] = []
        self.calls = 0
        self.seen: dict[str, Candidate] = {}

    def call(self, template: str, variables: dict[str, Any], n: int, temperature: float, sample: int) -> list[str] | None:
        """One LLM call under the formula grammar; None on a failure (recorded). Raises LLMUnavailable
        when the failure means the endpoint or model cannot be used at all."""
        self.calls += 1
        max_tokens = self.max_tokens or 60 * n + 40
        res = self.gw.structured(template, {"request": self.request, "grammar": self.language, "names": self.names,
                                            **variables}, Proposal, temperature=temperature, max_tokens=max_tokens,
                                 max_repairs=1, sample=sample, grammar=grammar_for(n, self.features, self.intent,
                                                                                   self.max_depth))
        if not res:
            self.failures.append(f"{template}: {res.kind}: {res.message}")
            why = unusable_endpoint(res)
            if why is not None:
                raise LLMUnavailable(why)
            return None
        return list(res.value.formulas)[:n]

    def add(self, formulas: Sequence[str], source: str, stage: str, rnd: int,
            concepts: Sequence[tuple[str, ...]] | None = None) -> list[Candidate]:
        out = []
        for i, text in enumerate(formulas):
            c = Candidate(formula=(text or "").strip()[:500], source=source, stage=stage, round=rnd,
                          concepts=tuple(concepts[i]) if concepts else ())
            cleaned = clean_formula(c.formula)
            if not cleaned:
                c.error = "empty formula"
            else:
                try:
                    c.expr = self.scorer.parse(cleaned)
                except FinllmError as exc:
                    c.error = str(exc)
            if c.expr is not None:
                c.missing = check_relevance(c.expr, self.intent)
            out.append(c)
        self.candidates.extend(out)
        return out

    def score(self, cands: Sequence[Candidate]) -> None:
        for c in cands:
            if not c.ok:
                continue
            if c.expr.key in self.seen:
                c.note = f"duplicate of an earlier candidate ({self.seen[c.expr.key].source})"
                continue
            self.seen[c.expr.key] = c
            try:
                c.scores = self.scorer.score(c.expr, ["train", "valid"])
            except FinllmError as exc:  # e.g. a field this panel lacks after all
                c.error, c.expr = str(exc), None
                continue
            if not math.isfinite(c.scores["valid"]["rank_ic"]):
                c.note = "no score: the factor is constant across stocks or mostly missing"

    def repair(self, cands: list[Candidate]) -> None:
        broken = [c for c in cands if c.error]
        for rnd in range(1, self.repair_rounds + 1):
            if not broken:
                return
            formulas = self.call("factor_request_repair",
                                 {"broken": [{"formula": c.formula, "error": c.error} for c in broken]},
                                 len(broken), 0.0, rnd)
            if formulas is None:
                return
            fixed = self.add(formulas, "llm", "repair", rnd)
            for old, new in zip(broken, fixed):
                new.repaired_from = old.formula
            self.score(fixed)
            broken = [c for c in fixed if c.error]

    def llm_round(self, template: str, variables: dict[str, Any], stage: str, rnd: int, temperature: float) -> bool:
        formulas = self.call(template, variables, self.n, temperature, rnd)
        if formulas is None:
            return False
        cands = self.add(formulas, "llm", stage, rnd)
        self.score(cands)
        self.repair(cands)
        return True

    def sign_flips(self) -> None:
        """The sign-flipped twin of the best candidates whose *train* RankIC is negative."""
        neg = [c for c in self.scored() if c.scores["train"]["rank_ic"] < 0 and c.stage != "sign"]
        neg.sort(key=lambda c: (c.relevant, -c.scores["train"]["rank_ic"]), reverse=True)
        for parent in neg[:MAX_SIGN_FLIPS]:
            twins = self.add([f"Mul({parent.expr.infix}, -1)"], parent.source, "sign", parent.round, [parent.concepts])
            twins[0].repaired_from = parent.expr.infix
            self.score(twins)

    def scored(self) -> list[Candidate]:
        return [c for c in self.candidates if c.ok and c.scores and not c.note]

    def ranked(self) -> list[Candidate]:
        return sorted(self.scored(), key=lambda c: (c.relevant, c.objective), reverse=True)

    def feedback(self) -> dict[str, Any]:
        def row(c: Candidate) -> dict[str, Any]:
            t, v = c.scores["train"], c.scores["valid"]
            note = c.note or ("misses " + "; ".join(c.missing) if c.missing else None)
            return {"formula": c.expr.infix, "train_rank_ic": t["rank_ic"], "valid_rank_ic": v["rank_ic"],
                    "turnover": v["turnover"], "coverage": v["coverage"], "note": note}

        shown = self.ranked()[:MAX_SCORED_SHOWN]
        failed = [c for c in self.candidates if c.error][-MAX_FAILED_SHOWN:]
        return {"scored": [row(c) for c in shown], "failed": [{"formula": c.formula, "error": c.error} for c in failed]}


def ask(request_text: str, panel: Panel, *, gateway: Gateway | None = None,
        splits: Mapping[str, str] | Sequence[Split] | None = None, n_candidates: int = 4, repair_rounds: int = 1,
        refine_rounds: int = 1, store: Store | None = None, horizon: int = 20,
        cost_bps: float = 10.0, n_save: int = 3, warmup_days: int = 126, max_tokens: int | None = None,
        progress: Callable[[str], None] | None = None, use_llm: bool = True, fallback: bool = True,
        max_depth: int = DEFAULT_DEPTH, n_examples: int = 4, scorer: SplitScorer | None = None) -> AskResult:
    """Turn ``request_text`` into scored, saved factor formulas (see the module docstring).

    panel: a :class:`factors.panel.Panel`; splits: {"train": "A:B", "valid": "A:B", "test"?: "A:B"} (default: the
    shared split rule of eval/mine); gateway: a finllm LLM gateway (default: ``get_gateway`` for the ask run);
    store: where the run and the saved factors go (None: nothing is saved, no library retrieval);
    use_llm=False: built-in formulas only; fallback=False: LLM candidates only; scorer: a
    :class:`RequestScorer` built once for many requests on the same panel/splits/horizon (its splits win).
    """
    t0 = time.monotonic()
    request_text = (request_text or "").strip()
    if not request_text:
        raise ConfigError("the factor request is empty: describe the idea in words")
    if n_candidates < 1 or repair_rounds < 0 or refine_rounds < 0 or n_save < 0:
        raise ConfigError("n_candidates must be >= 1; repair_rounds, refine_rounds and n_save >= 0")
    if not (use_llm or fallback):
        raise ConfigError("nothing to propose factors: use the LLM, the built-in formulas, or both")
    if scorer is not None:
        split_list = list(scorer.splits)
    else:
        split_list = _as_splits(default_splits(panel.dates, getattr(panel, "source", None)) if splits is None
                                else splits, panel.dates)
    split_text = {s.name: s.text() for s in split_list}
    say = progress or (lambda msg: None)
    intent = read_intent(request_text, None)
    cfg = {"request": request_text, "data": getattr(panel, "source", ""), "splits": split_text, "horizon": horizon,
           "cost_bps": cost_bps, "n_candidates": n_candidates, "repair_rounds": repair_rounds,
           "refine_rounds": refine_rounds, "use_llm": use_llm, "fallback": fallback}
    with store.run("factor_ask", cfg, name=request_text[:200]) if store is not None else nullcontext() as run:
        run_id = run.id if run is not None else None
        say("scoring panel: building the evaluator")
        scorer = scorer or RequestScorer(panel, split_list, horizon, cost_bps, warmup_days)
        intent = read_intent(request_text, scorer.ev.features)
        if use_llm and gateway is None:
            from finllm.llm import get_gateway

            gateway = get_gateway(run_id=run_id, store=store)
        s = _Session(request_text, intent, scorer, gateway, n_candidates, repair_rounds, max_tokens, max_depth)
        if use_llm:
            examples = retrieve_examples(store, intent, s.features, n_examples)
            say(f"LLM: proposing {n_candidates} formulas (the request names {intent.describe()})")
            s.llm_round("factor_request", {"examples": examples, "n": n_candidates, "horizon": horizon},
                        "propose", 0, 0.7)
            for k in range(1, refine_rounds + 1):
                if not any(c.source == "llm" for c in s.scored()):
                    break  # nothing scored to refine from: repairs already had their chance
                say(f"LLM: refining with the evaluator's scores (round {k})")
                if not s.llm_round("factor_request_refine", {**s.feedback(), "n": n_candidates, "horizon": horizon},
                                   "refine", k, 0.9):
                    break
        if fallback:
            pool = fallback_pool(intent, s.features)
            say(f"scoring {len(pool)} built-in formulas for {intent.describe()}")
            s.score(s.add([k.expr.infix for k in pool], "fallback", "builtin", 0, [k.concepts for k in pool]))
        s.sign_flips()
        result = _finish(s, request_text, split_list, split_text, n_save, store, run, use_llm)
    result.seconds = time.monotonic() - t0
    return result


def _explain(c: Candidate, s: _Session) -> str:
    """The saved factor's explanation, written by code from what is known (never the model's words)."""
    if c.source == "llm":
        how = "decoded under the formula grammar" if s.gw.grammar_supported else "parsed and checked"
        origin = f"written by the LLM {s.gw.model!r} ({how}; {c.stage} round {c.round})"
    else:
        origin = f"built-in known formula for {', '.join(c.concepts) or 'the request'}"
    if c.stage == "sign":
        origin += f", sign flipped because {c.repaired_from} had a negative train RankIC"
    u = usage(c.expr)
    uses = f"uses {', '.join(sorted(u.fields))}" + (f", windows {', '.join(str(w) for w in sorted(u.windows))}"
                                                     if u.windows else "")
    fit = ("covers what the request names" if c.relevant else "misses " + "; ".join(c.missing)) if s.intent.named \
        else "the request names no field, window or concept"
    t, v = c.scores["train"]["rank_ic"], c.scores["valid"]["rank_ic"]
    return f"{origin}; {uses}; {fit}; train RankIC {t:.4f}, valid RankIC {v:.4f} (test not used for the choice)."


def _finish(s: _Session, request_text: str, split_list: list[Split], split_text: dict[str, str], n_save: int,
            store: Store | None, run: RunHandle | None, use_llm: bool) -> AskResult:
    ranked = s.ranked()
    best = ranked[:n_save]
    test = [sp.name for sp in split_list if sp.name == "test"]
    for c in best:
        if test:
            c.scores.update(s.scorer.score(c.expr, test))
        c.explanation = _explain(c, s)
    llm_scored = [c for c in ranked if c.source == "llm"]
    llm = {"used": use_llm, "model": getattr(s.gw, "model", None), "endpoint": getattr(s.gw, "endpoint", None),
           "grammar": bool(use_llm and s.gw.grammar_supported), "usable": bool(llm_scored),
           "relevant": sum(c.relevant for c in llm_scored)}
    if not any(c.ok for c in s.candidates):
        status = "no_valid_formula"
        message = f"no valid formula ({len(s.candidates)} tried); see the grammar errors"
    elif not ranked:
        status = "no_usable_factor"
        message = "every valid formula was a duplicate or gave no score (constant or mostly missing)"
    else:
        status = "ok"
        b = ranked[0]
        fit = "uses what the request names" if b.relevant else "misses " + "; ".join(b.missing)
        message = (f"best: {b.expr.infix} ({b.source}; valid RankIC {b.scores['valid']['rank_ic']:.4f}, "
                   f"train RankIC {b.scores['train']['rank_ic']:.4f}; {fit})")
    run_id = run.id if run is not None else None
    if store is not None and run is not None:
        for c in best:
            c.factor_id = store.save_factor(list(c.expr.tokens), c.expr.infix, "llm" if c.source == "llm" else "builtin",
                                            metrics=c.scores, explanation=c.explanation, request_text=request_text,
                                            run_id=run_id)
        lineage = [{"formula": c.expr.infix, "factor_id": c.factor_id, "source": c.source, "stage": c.stage,
                    "round": c.round, "relevant": c.relevant, "missing": c.missing, "model": llm["model"],
                    "endpoint": llm["endpoint"], "request": request_text,
                    **{f"{k}_rank_ic": v.get("rank_ic") for k, v in c.scores.items()}} for c in best]
        metrics = {"status": status, "intent": s.intent.to_dict(), "llm": llm,
                   "n_candidates": len(s.candidates), "n_valid": sum(c.ok for c in s.candidates),
                   "n_llm": sum(c.source == "llm" for c in s.candidates), "n_saved": len(best),
                   "llm_calls": s.calls, "llm_failures": s.failures, "best": lineage,
                   "grammar_errors": [{"formula": c.formula, "error": c.error} for c in s.candidates if c.error][:20]}
        run.metrics.update(metrics)
        if status != "ok":
            run.fail(message)
    return AskResult(request=request_text, status=status, message=message, candidates=s.candidates, saved=best,
                     llm_calls=s.calls, llm_failures=s.failures, run_id=run_id, splits=split_text, intent=s.intent,
                     llm=llm)


__all__ = ["ask", "AskResult", "Candidate", "RequestScorer", "default_splits", "render_grammar", "retrieve_examples", "Proposal",
           "LLMUnavailable"]
