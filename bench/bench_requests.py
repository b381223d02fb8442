"""Factor requests: do analysts get valid, scored factors that use what they asked for, and how fast?

    python bench/bench_requests.py --data data/market/us_sp500_daily.parquet --name us
    python bench/bench_requests.py --data data/market/crypto_daily.parquet --name crypto   # a market you don't have
    python bench/bench_requests.py --limit 5 --refine-rounds 0                              # a quick look

32 analyst requests written for this bench, each with its own relevance rule, checked by machine on
the best saved factor (fields it must use, windows of which it must use one, operator groups of which it
must use one member each, "a price field"). The rule is stated here, independently of the
request reader in factors/request_intent.py, so the bench measures that reader too.

Per request, in one process and one run: ``ask`` with the LLM (the configured endpoint, else the
embedded SmolLM2-135M on FINLLM_LLM_PORT; default options of ``finllm factors ask``) and, as the
baseline, ``ask(use_llm=False)``: the built-in pool alone. Printed: validity rate (>= 1 valid scored
factor), relevance rate of the best factor, split by where it came from (LLM or built-in fallback),
how many LLM-written formulas parsed and how often one of them was relevant, best valid RankIC, seconds
per request. Results: bench/results/requests_<name>.jsonl (one line per request, written as it goes)
and requests_<name>.md (the table).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factors.expr import Expr  # noqa: E402
from factors.request_intent import PRICES, usage  # noqa: E402

CHANGE = ["Delta", "Ref", "Slope", "Rank", "Mean", "EMA", "WMA"]
VOL = ["Std", "Var", "Mad"]
EXT = ["Max", "Min", "IdxMax", "IdxMin"]
CS = ["CSRank", "CSZScore"]
MA = ["Mean", "EMA", "WMA"]
# text, fields (all), windows (one of), operator groups (one of each), needs a price field
REQUESTS: list[tuple[str, list[str], list[int], list[list[str]], bool]] = [
    ("stocks that fall on heavy volume tend to rebound", ["$volume"], [], [CHANGE], True),
    ("low volatility stocks outperform", [], [], [VOL], False),
    ("20-day momentum", [], [20], [CHANGE], True),
    ("weekly reversal: last week's losers bounce back", [], [5], [CHANGE], True),
    ("stocks near their 60-day high keep rising", [], [60], [EXT], False),
    ("unusually heavy trading volume over the past month", ["$volume"], [20], [], False),
    ("price and volume moving together over 10 days", ["$close", "$volume"], [10], [["Corr", "Cov"]], False),
    ("a wide high-low range signals risk", ["$high", "$low"], [], [], False),
    ("overnight gaps tend to reverse", ["$open", "$close"], [], [], False),
    ("stocks with high return skewness over 60 days underperform", [], [60], [["Skew"]], False),
    ("quarterly momentum ranked against peers", [], [60], [CHANGE, CS], True),
    ("volatility of volume over 20 days", ["$volume"], [20], [VOL], False),
    ("a 5-day moving average crossing the 20-day moving average", [], [5, 20], [MA], False),
    ("the closing price relative to vwap", ["$close", "$vwap"], [], [], False),
    ("one-year momentum", [], [252], [CHANGE], True),
    ("fat tails in daily returns over a quarter", [], [60], [["Kurt"]], False),
    ("trend strength: the slope of the price over 30 days", [], [30], [["Slope"]], True),
    ("stocks whose volume is drying up", ["$volume"], [], [], False),
    ("the opening price versus the previous close", ["$open", "$close"], [], [], False),
    ("the daily high relative to its 20-day maximum", ["$high"], [20], [["Max"]], False),
    ("the daily low relative to its 10-day minimum", ["$low"], [10], [["Min"]], False),
    ("liquidity: turnover averaged over 60 days", ["$volume"], [60], [], False),
    ("monthly reversal of losers", [], [20], [CHANGE], True),
    ("calm stocks with stable prices over 40 days", [], [40], [VOL], False),
    ("correlation between returns and volume changes", ["$volume"], [], [["Corr", "Cov"]], False),
    ("cross-sectional rank of weekly returns", [], [5], [CS], False),
    ("days since the 20-day high", [], [20], [["IdxMax", "Max"]], False),
    ("an exponential moving average of the price over 10 days", [], [10], [["EMA"]], True),
    ("prices rising on strong volume keep rising", ["$volume"], [], [CHANGE], True),
    ("a wide high-low range relative to the close over 5 days", ["$high", "$low"], [5], [], False),
    ("vwap momentum over 20 days", ["$vwap"], [20], [CHANGE], False),
    ("find me a factor that predicts returns", [], [], [], False),
]


def relevant(expr: Expr | None, rule: tuple[str, list[str], list[int], list[list[str]], bool]) -> bool:
    """The bench's own relevance rule for one request (see REQUESTS)."""
    if expr is None:
        return False
    _, fields, windows, groups, price = rule
    u = usage(expr)
    return (set(fields) <= u.fields and (not windows or bool(set(windows) & u.windows))
            and all(set(g) & u.ops for g in groups) and (not price or bool(u.fields & PRICES)))


def _one(res: Any, rule: tuple, seconds: float) -> dict[str, Any]:
    best = res.saved[0] if res.saved else None
    llm = [c for c in res.candidates if c.source == "llm" and c.stage != "sign"]  # as the model wrote them
    return {"valid": bool(res.ok and best is not None and best.objective > -1e9),
            "best": best.expr.infix if best else None, "source": best.source if best else None,
            "relevant": relevant(best.expr if best else None, rule),
            "valid_rank_ic": best.scores["valid"]["rank_ic"] if best else None,
            "llm_formulas": len(llm), "llm_parsed": sum(c.ok for c in llm),
            "llm_relevant": sum(relevant(c.expr, rule) for c in llm if c.ok),
            "llm_failures": res.llm_failures[:2], "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--name", default="us", help="results go to bench/results/requests_<name>.*")
    ap.add_argument("--limit", type=int, default=len(REQUESTS), help="first N requests only")
    ap.add_argument("--resume", action="store_true",
                    help="skip the requests already in requests_<name>.jsonl and append (a stopped run)")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--refine-rounds", type=int, default=1)
    ap.add_argument("--table-only", action="store_true",
                    help="print the table of the requests already in requests_<name>.jsonl (a stopped run)")
    args = ap.parse_args()
    out_dir = Path(__file__).resolve().parent / "results"
    jsonl = out_dir / f"requests_{args.name}.jsonl"
    if args.table_only:
        done = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        print(_table(done, args, float("nan")))
        return

    from factors.panel import load_panel
    from factors.requests import RequestScorer, _as_splits, ask, default_splits
    from finllm.llm import get_gateway
    from finllm.store import open_store

    t0 = time.monotonic()
    panel = load_panel(args.data)
    splits = _as_splits(default_splits(panel.dates, getattr(panel, "source", None)), panel.dates)
    scorer = RequestScorer(panel, splits, 20, 10.0, 126)
    setup_s = time.monotonic() - t0
    print(f"{args.data}: {len(panel.dates)} days x {panel.values.shape[1]} tickers, splits "
          f"{ {s.name: s.text() for s in splits} }, evaluator ready in {setup_s:.1f}s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")  # a fresh library: retrieval starts empty
        done = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] \
            if args.resume and jsonl.exists() else []
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in done))
        rows.extend(done)
        for k, rule in enumerate(REQUESTS[: args.limit]):
            text = rule[0]
            if any(r["request"] == text for r in done):
                continue
            t1 = time.monotonic()
            res = ask(text, panel, gateway=get_gateway(store=store), store=store, scorer=scorer,
                      n_candidates=args.candidates, refine_rounds=args.refine_rounds)
            row = {"request": text, **_one(res, rule, time.monotonic() - t1)}
            t2 = time.monotonic()
            base = ask(text, panel, store=None, scorer=scorer, use_llm=False)
            row["baseline"] = _one(base, rule, time.monotonic() - t2)
            rows.append(row)
            with jsonl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"[{k + 1}/{args.limit}] {row['seconds']:5.1f}s {row['source'] or '-':8} relevant={row['relevant']!s:5} "
                  f"llm {row['llm_parsed']}/{row['llm_formulas']} parsed, {row['llm_relevant']} relevant | {text}",
                  file=sys.stderr)
    print(_table(rows, args, setup_s))
    (out_dir / f"requests_{args.name}.md").write_text(_table(rows, args, setup_s) + "\n")


def _rate(xs: list[bool]) -> str:
    return f"{sum(xs)}/{len(xs)} ({100 * sum(xs) / len(xs):.0f}%)" if xs else "—"


def _table(rows: list[dict[str, Any]], args: argparse.Namespace, setup_s: float) -> str:
    def stats(rs: list[dict[str, Any]], label: str) -> list[str]:
        by_llm = [r["relevant"] for r in rs if r["source"] == "llm"]
        by_fb = [r["relevant"] for r in rs if r["source"] == "fallback"]
        ric = [r["valid_rank_ic"] for r in rs if r["valid_rank_ic"] is not None]
        secs = [r["seconds"] for r in rs]
        parsed = sum(r["llm_parsed"] for r in rs)
        written = sum(r["llm_formulas"] for r in rs)
        return [f"| {label} | {_rate([r['valid'] for r in rs])} | {_rate([r['relevant'] for r in rs])} | "
                f"{_rate(by_llm)} | {_rate(by_fb)} | {parsed}/{written} | "
                f"{_rate([r['llm_relevant'] > 0 for r in rs]) if written else '—'} | "
                f"{statistics.median(ric):.4f} | {statistics.median(secs):.1f} / {max(secs):.1f} |"]

    setup = "rows read back from the jsonl" if setup_s != setup_s else f"evaluator set up once in {setup_s:.0f}s"
    lines = [f"data {args.data} ({len(rows)} requests; {args.candidates} formulas per LLM round, "
             f"{args.refine_rounds} refine round(s); {setup}; baseline seconds exclude scoring: it reuses the "
             "scores of the same formulas from the LLM run)", "",
             "| run | >= 1 valid scored factor | best is relevant | ... when the LLM's | ... when the fallback's | "
             "LLM formulas parsed | an LLM formula relevant | median best valid RankIC | s/request median / max |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += stats(rows, "LLM + built-in pool")
    lines += stats([{**r["baseline"]} for r in rows], "built-in pool only (baseline)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
