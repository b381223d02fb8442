"""Natural-language factor requests: an analyst's idea -> LLM candidate formulas -> checked -> scored -> saved.

Loop (every step bounded; every LLM answer is data, parsed by the expression grammar, never evaluated as
code):

1. **Propose.** The LLM gets the idea, the operator grammar (rendered from :data:`factors.ops.OPS`, so it
   always matches what the parser accepts) and a few worked examples (template ``factor_request``), and
   answers ``{"candidates": [{"formula", "explanation"}]}``.
2. **Check.** Each formula goes through the panel's parser (:meth:`factors.evaluate.Evaluator.parse`):
   unknown operators/fields, wrong arity, bad windows and look-ahead (``Ref(x, -5)``) are rejected with
   the parser's exact message (token + position).
3. **Repair.** Rejected formulas go back with their errors (template ``factor_request_repair``) for at
   most ``repair_rounds`` rounds.
4. **Score (the evaluator is the LLM's tool).** Valid formulas are evaluated on the panel: train and
   valid IC, RankIC, top-quintile turnover and coverage. The test split is never shown to the LLM and
   never used for selection; it is measured only for the factors finally saved.
5. **Refine.** The scores go back (template ``factor_request_refine``) and the LLM proposes improved
   candidates, which are checked, repaired and scored the same way, ``refine_rounds`` times.
6. **Save.** The best ``n_save`` scored candidates (by valid RankIC) go to the factor library
   (source ``llm``, with the request text, the LLM's explanation and train/valid/test metrics); the miner
   can start from them (``factors mine --seed-library llm``).

No fallback: if the model never produces a valid formula, the result says so (status
``no_valid_formula`` or ``llm_failed``) and lists every grammar error; nothing is made up from keywords.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from finllm.errors import ConfigError, FinllmError
from finllm.jsonsafe import json_safe

EXAMPLES = (
    {"idea": "short-term reversal: last week's losers bounce back",
     "formula": "Mul(Div(Delta($close, 5), Ref($close, 5)), -1)"},
    {"idea": "unusually heavy trading", "formula": "Div($volume, Mean($volume, 20))"},
    {"idea": "price and volume moving together", "formula": "Corr($close, $volume, 10)"},
    {"idea": "calm stocks do better", "formula": "Mul(Std(Div(Delta($close, 1), Ref($close, 1)), 20), -1)"},
)
ARG_TEXT = {"expr": "x", "window": "d", "const": "c", "expr_or_const": "x"}
MAX_SCORED_SHOWN = 6
MAX_FAILED_SHOWN = 3


def _formula_pattern() -> str:
    """Regex sent in the JSON schema (not validated by pydantic): "an operator call". With llama.cpp it
    becomes part of the decoding grammar, which keeps small models from answering bare numbers; the real
    check is still the expression parser."""
    from factors.ops import OPS

    return r"^(" + "|".join(OPS) + r")\([$A-Za-z0-9(), .*/+-]+\)$"


class ProposedFactor(BaseModel):
    """One candidate as the LLM wrote it (validated shape; the formula is parsed later)."""

    formula: str = Field(description="one formula in the grammar",
                         json_schema_extra=lambda schema: schema.update(pattern=_formula_pattern()))
    explanation: str = Field(default="", description="one sentence: why it captures the idea")


class Proposal(BaseModel):
    # No maxItems / maxLength: llama.cpp's schema grammar cannot compile long repetitions; trimmed in code.
    candidates: list[ProposedFactor]


def render_grammar(features: Sequence[str] | None = None) -> str:
    """A compact description of the expression language, generated from the operator registry."""
    from factors.expr import FEATURES
    from factors.ops import MAX_WINDOW, OPS

    feats = list(features or FEATURES)
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, spec in OPS.items():
        groups.setdefault(spec.arg_kinds, []).append(name)
    lines = [f"Fields (daily, per stock): {', '.join(feats)}.",
             f"x, y = any expression; d = a whole number of days 1..{MAX_WINDOW}; c = a number."]
    for kinds, names in groups.items():
        args = ", ".join(ARG_TEXT[k] for k in kinds)
        if kinds and kinds[0] == "expr_or_const" or kinds[:2] == ("expr", "expr"):
            args = "x, y" + args[4:]
        shown = ", ".join(f"{n}({args})" for n in names)
        if kinds == ("expr", "window"):
            shown += " (rolling over the last d days; Ref = value d days ago)"
        elif kinds == ("expr",) and any(OPS[n].category == "cs" for n in names):
            shown += " (CS = across stocks on the same day)"
        lines.append(f"- {shown}")
    lines.append("Numbers may be used where x or y is allowed in Add/Sub/Mul/Div/Greater/Less. "
                 "+ - * / are also accepted. Windows must be positive: no looking into the future.")
    return "\n".join(lines)


@dataclass
class Candidate:
    """One formula the LLM wrote, what the parser said and what the evaluator measured."""

    formula: str
    explanation: str
    stage: str  # propose | repair | refine
    round: int
    expr: Any = None  # factors.expr.Expr when it parsed
    error: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics
    note: str | None = None
    repaired_from: str | None = None
    factor_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.expr is not None and self.error is None

    @property
    def objective(self) -> float:
        v = self.scores.get("valid", {}).get("rank_ic", float("nan"))
        return v if isinstance(v, float) and math.isfinite(v) else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"formula": self.formula, "canonical": self.expr.infix if self.expr is not None else None,
                "tokens": list(self.expr.tokens) if self.expr is not None else None,
                "explanation": self.explanation, "stage": self.stage, "round": self.round, "error": self.error,
                "scores": self.scores, "note": self.note, "repaired_from": self.repaired_from,
                "factor_id": self.factor_id}


@dataclass
class AskResult:
    """Everything an ``ask`` did. ``status``: ok | no_valid_formula | no_usable_factor | llm_failed."""

    request: str
    status: str
    message: str
    candidates: list[Candidate]
    saved: list[Candidate]
    llm_calls: int
    llm_failures: list[str]
    run_id: str | None = None
    splits: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def grammar_errors(self) -> list[dict[str, str]]:
        return [{"formula": c.formula, "error": c.error} for c in self.candidates if c.error]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"request": self.request, "status": self.status, "message": self.message, "run_id": self.run_id,
                "splits": self.splits, "llm_calls": self.llm_calls, "llm_failures": self.llm_failures,
                "saved": [c.to_dict() for c in self.saved], "candidates": [c.to_dict() for c in self.candidates],
                "grammar_errors": self.grammar_errors})


def default_splits(dates: np.ndarray) -> dict[str, str]:
    """Chronological 60 / 20 / 20 train / valid / test ranges over the panel's dates (as ``factors mine``)."""
    from factors.splits import time_splits

    return {sp.name: sp.text() for sp in time_splits(dates)}


def _as_splits(splits: Mapping[str, str] | Sequence[Any] | None, dates: np.ndarray) -> list[Any]:
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


class _Scorer:
    """Scores formulas per split on one panel (per-split days purged by the horizon)."""

    def __init__(self, panel: Any, splits: list[Any], horizon: int, cost_bps: float, warmup_days: int) -> None:
        from factors.mine import SplitScorer

        self.sc = SplitScorer(panel, splits, horizon, cost_bps, warmup_days)
        self.horizon = horizon

    def parse(self, text: str) -> Any:
        return self.sc.ev.parse(text)

    def score(self, expr: Any, split_names: Sequence[str]) -> dict[str, dict[str, float]]:
        from factors.metrics import ic_series, rank_ic_series, summarize, top_turnover

        sc = self.sc
        x = torch_where_mask(sc.ev.evaluate(expr), sc.mask)
        ic, ric = ic_series(x, sc.target, sc.mask), rank_ic_series(x, sc.target, sc.mask)
        out = {}
        for name in split_names:
            days = sc.days[name]
            si, sr = summarize(ic[days]), summarize(ric[days])
            m = sc.mask[days]
            xs = x[days]
            out[name] = {"ic": si["mean"], "rank_ic": sr["mean"], "icir": si["ir"],
                         "turnover": top_turnover(xs, m), "coverage": float((xs.isfinite() & m).sum() / m.sum().clamp(min=1)),
                         "n_days": si["n_days"]}
        return {k: {m: (float(v) if isinstance(v, (int, float)) else v) for m, v in d.items()} for k, d in out.items()}


def torch_where_mask(x: Any, mask: Any) -> Any:
    import torch

    return torch.where(mask, x, torch.full((), float("nan")))


def _clean_formula(text: str) -> str:
    s = (text or "").strip().strip("`").strip()
    return s[:-1].strip() if s.endswith(";") else s


class _Session:
    def __init__(self, request: str, scorer: _Scorer, gateway: Any, n_candidates: int, repair_rounds: int,
                 max_tokens: int) -> None:
        self.request, self.scorer, self.gw = request, scorer, gateway
        self.n, self.repair_rounds, self.max_tokens = n_candidates, repair_rounds, max_tokens
        self.grammar = render_grammar(scorer.sc.ev.features)
        self.candidates: list[Candidate] = []
        self.failures: list[str] = []
        self.calls = 0
        self.seen: dict[str, Candidate] = {}

    def call(self, template: str, variables: dict[str, Any], temperature: float) -> list[ProposedFactor] | None:
        self.calls += 1
        res = self.gw.structured(template, {"request": self.request, "grammar": self.grammar, **variables},
                                 Proposal, temperature=temperature, max_tokens=self.max_tokens, max_repairs=1)
        if not res:
            self.failures.append(f"{template}: {res.kind}: {res.message}")
            return None
        return list(res.value.candidates)

    def check(self, props: Sequence[ProposedFactor], stage: str, rnd: int) -> list[Candidate]:
        out = []
        for p in props:
            c = Candidate(formula=(p.formula or "").strip()[:500], explanation=(p.explanation or "").strip()[:500],
                          stage=stage, round=rnd)
            text = _clean_formula(c.formula)
            if not text:
                c.error = "empty formula"
            else:
                try:
                    c.expr = self.scorer.parse(text)
                except FinllmError as exc:
                    c.error = str(exc)
            out.append(c)
        self.candidates.extend(out)
        return out

    def score(self, cands: Sequence[Candidate]) -> None:
        for c in cands:
            if not c.ok:
                continue
            if c.expr.key in self.seen:
                c.note = f"duplicate of an earlier candidate ({c.expr.infix})"
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
            props = self.call("factor_request_repair",
                              {"broken": [{"formula": c.formula, "error": c.error} for c in broken]}, 0.0)
            if props is None:
                return
            fixed = self.check(props[:len(broken)], "repair", rnd)
            for old, new in zip(broken, fixed):
                new.repaired_from = old.formula
            self.score(fixed)
            broken = [c for c in fixed if c.error]

    def round(self, template: str, variables: dict[str, Any], stage: str, rnd: int, temperature: float) -> bool:
        props = self.call(template, variables, temperature)
        if props is None:
            return False
        cands = self.check(props[:self.n], stage, rnd)
        self.score(cands)
        self.repair(cands)
        return True

    def scored(self) -> list[Candidate]:
        return sorted([c for c in self.candidates if c.ok and c.scores and not c.note],
                      key=lambda c: c.objective, reverse=True)

    def feedback(self) -> dict[str, Any]:
        def row(c: Candidate) -> dict[str, Any]:
            t, v = c.scores["train"], c.scores["valid"]
            return {"formula": c.expr.infix, "train_ic": t["ic"], "train_rank_ic": t["rank_ic"], "valid_ic": v["ic"],
                    "valid_rank_ic": v["rank_ic"], "turnover": v["turnover"], "coverage": v["coverage"], "note": c.note}

        shown = [c for c in self.candidates if c.ok and c.scores]
        shown.sort(key=lambda c: c.objective, reverse=True)
        failed = [c for c in self.candidates if c.error][-MAX_FAILED_SHOWN:]
        return {"scored": [row(c) for c in shown[:MAX_SCORED_SHOWN]],
                "failed": [{"formula": c.formula, "error": c.error} for c in failed]}


def ask(request_text: str, panel: Any, *, gateway: Any = None, splits: Mapping[str, str] | Sequence[Any] | None = None,
        n_candidates: int = 4, repair_rounds: int = 2, refine_rounds: int = 1, store: Any = None, horizon: int = 20,
        cost_bps: float = 10.0, n_save: int = 3, warmup_days: int = 126, max_tokens: int = 400,
        progress: Any = None) -> AskResult:
    """Turn ``request_text`` into scored, saved factor formulas with the LLM (see the module docstring).

    panel: a :class:`factors.panel.Panel`; splits: {"train": "A:B", "valid": "A:B", "test"?: "A:B"} (default:
    chronological 60/20/20 of the panel); gateway: a finllm LLM gateway (default: ``get_gateway`` for the
    ask run); store: where the run and the saved factors go (None: nothing is saved).
    """
    request_text = (request_text or "").strip()
    if not request_text:
        raise ConfigError("the factor request is empty: describe the idea in words")
    if n_candidates < 1 or repair_rounds < 0 or refine_rounds < 0 or n_save < 0:
        raise ConfigError("n_candidates must be >= 1; repair_rounds, refine_rounds and n_save >= 0")
    split_list = _as_splits(splits, panel.dates)
    split_text = {s.name: s.text() for s in split_list}
    say = progress or (lambda msg: None)
    run_id = None
    if store is not None:
        run_id = store.start_run("factor_ask", {"request": request_text, "data": getattr(panel, "source", ""),
                                                "splits": split_text, "horizon": horizon, "cost_bps": cost_bps,
                                                "n_candidates": n_candidates, "repair_rounds": repair_rounds,
                                                "refine_rounds": refine_rounds}, name=request_text[:200])
    try:
        if gateway is None:
            from finllm.llm import get_gateway

            gateway = get_gateway(run_id=run_id, store=store)
        say("scoring panel: building the evaluator")
        scorer = _Scorer(panel, split_list, horizon, cost_bps, warmup_days)
        s = _Session(request_text, scorer, gateway, n_candidates, repair_rounds, max_tokens)
        say("LLM: proposing candidate formulas")
        s.round("factor_request", {"examples": list(EXAMPLES), "n": n_candidates, "horizon": horizon},
                "propose", 0, 0.0)
        for k in range(1, refine_rounds + 1):
            if not s.candidates or not any(c.ok for c in s.candidates):
                break  # nothing scored to refine from: repairs already had their chance
            say(f"LLM: refining with the evaluator's scores (round {k})")
            if not s.round("factor_request_refine", {**s.feedback(), "n": n_candidates, "horizon": horizon},
                           "refine", k, 0.7):
                break
        result = _finish(s, request_text, split_list, split_text, n_save, store, run_id)
    except BaseException as exc:
        if store is not None and run_id is not None:
            store.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return result


def _finish(s: _Session, request_text: str, split_list: list[Any], split_text: dict[str, str], n_save: int,
            store: Any, run_id: str | None) -> AskResult:
    best = s.scored()[:n_save]
    test = [sp.name for sp in split_list if sp.name == "test"]
    for c in best:
        if test:
            c.scores.update(s.scorer.score(c.expr, test))
    if not s.candidates:
        status = "llm_failed"
        message = "the LLM gave no candidates: " + ("; ".join(s.failures) or "empty answer")
    elif not any(c.ok for c in s.candidates):
        status = "no_valid_formula"
        message = (f"the model produced no valid formula ({len(s.candidates)} tried, "
                   f"{s.repair_rounds} repair round(s)); see the grammar errors")
    elif not best:
        status = "no_usable_factor"
        message = "every valid formula was a duplicate or gave no score (constant or mostly missing)"
    else:
        status = "ok"
        b = best[0]
        message = (f"best: {b.expr.infix} (valid RankIC {b.scores['valid']['rank_ic']:.4f}, "
                   f"train RankIC {b.scores['train']['rank_ic']:.4f})")
    if store is not None:
        for c in best:
            expl = c.explanation or "(the LLM gave no explanation)"
            c.factor_id = store.save_factor(list(c.expr.tokens), c.expr.infix, "llm", metrics=c.scores,
                                            explanation=expl, request_text=request_text, run_id=run_id)
        metrics = {"status": status, "n_candidates": len(s.candidates), "n_valid": sum(c.ok for c in s.candidates),
                   "n_saved": len(best), "llm_calls": s.calls, "llm_failures": s.failures,
                   "best": [{"formula": c.expr.infix, "factor_id": c.factor_id, **{f"{k}_rank_ic": v.get("rank_ic")
                                                                                    for k, v in c.scores.items()}}
                            for c in best],
                   "grammar_errors": [{"formula": c.formula, "error": c.error} for c in s.candidates if c.error][:20]}
        store.finish_run(run_id, metrics=metrics, status="finished" if status == "ok" else "failed",
                         error=None if status == "ok" else message)
    return AskResult(request=request_text, status=status, message=message, candidates=s.candidates, saved=best,
                     llm_calls=s.calls, llm_failures=s.failures, run_id=run_id, splits=split_text)
