"""Dose-response of the LLM supervisor: how good must the verdicts be for it to pay off?

Semi-supervised GADBench setting (20 fraud + 80 normal training labels, the same for validation, the
rest test) on every shipped graph, the same detector (``--model``, default hsign: 0.5-0.8 s a training
on one torch thread, so the 150-row grid with its round-2 retrains fits in about 5 minutes on a loaded
2-core host; the CLI's default ``auto`` tunes five candidates per seed) and seeds for every row. For each seed the plain run (round 1, no supervisor) is trained once and every supervised
variant starts from it, so the differences are the supervisor's alone.

Verdict sources:

* ``simulated`` (fraud/supervisor/simulated.py): a loopback OpenAI-compatible endpoint, NOT an LLM,
  whose verdicts are drawn from the true labels with AUROC Q, independently of the detector's score;
  the supervisor reaches it through the normal gateway. One row per (graph, Q, budget), means over seeds.
* ``--ablation-q``: at that Q (default 0.8, the goal's) and budget 200, one use at a time
  (pseudo / fuse / noise+edges) against all (= pseudo + fuse).
* ``--ceiling Q1,Q2``: at those Q and every budget, what the uses could add at best (no calibration cost,
  the verdicts read exactly, no guard; plus the same nodes' true labels): bench/supervisor_ceiling.py.
* ``--endpoint``: the configured endpoint (the embedded SmolLM2-135M unless FINLLM_LLM_BASE_URL is set)
  through the CLI's code path (run_seeds_supervised, the same seeds), with wall time against the plain
  run of the same seeds, measured in the same process.

    python bench/bench_supervisor.py                                  # simulated: 2 graphs x 5 seeds x 6 Q x 2 budgets
    python bench/bench_supervisor.py --datasets amazon --seeds 0 --out a0.json &   # ... one process per part, then
    python bench/bench_supervisor.py --merge a0.json,a1.json,b0.json,b1.json        # one table
    python bench/bench_supervisor.py --qs '' --ablation-q 0 --budgets 50,200 --ceiling 0.8,0.9,0.95   # ceilings only
    FINLLM_LLM_PORT=8803 python bench/bench_supervisor.py --endpoint --seeds 0,1 --budgets 200 --no-simulated
    FINLLM_LLM_BASE_URL=https://api.openai.com/v1 FINLLM_LLM_MODEL=gpt-4o-mini OPENAI_API_KEY=... \\
        python bench/bench_supervisor.py --endpoint --budgets 200 --no-simulated   # a real endpoint's column
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = {"amazon": REPO / "data/fraud/amazon_upu.mat", "bitcoin": REPO / "data/fraud/soc-sign-bitcoinotc.csv"}
ABLATION = {"pseudo": "pseudo", "fuse": "fuse", "noise+edges": "noise,edges", "all": "all"}


def _m(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in ("auprc", "auroc", "rec@k")}


def simulated_rows(ds, seeds: list[int], qs: list[float], budgets: list[int], args) -> list[dict]:
    from finllm.config import Settings
    from finllm.llm import Budget, Gateway
    from fraud.splits import make_split
    from fraud.supervisor.loop import train_supervised
    from fraud.supervisor.simulated import SimulatedVerdictServer
    from bench.supervisor_ceiling import ceiling_seed
    from fraud.train import train_model

    opts = {"epochs": args.epochs, "patience": args.patience}
    rows = []
    home = Path(tempfile.mkdtemp(prefix="bench_sup_"))
    for seed in seeds:
        split = make_split(ds, "semi", seed)
        t = time.perf_counter()
        r1 = train_model(ds, args.model, split, seed, **opts)
        plain_s = time.perf_counter() - t
        if args.ceiling:  # the same round 1, every verdict on the band, an exact combination
            for b in budgets:
                rows += ceiling_seed(ds, split, seed, r1, [float(q) for q in args.ceiling.split(",")], b,
                                     model=args.model, opts=opts, soft_scale=args.soft_scale)
        plan = [(q, b, "all") for q in qs for b in budgets]
        plan += [(args.ablation_q, 200, v) for v in ABLATION if v != "all"] if args.ablation_q else []
        for q, budget, variant in plan:
            with SimulatedVerdictServer(ds.data.y.numpy(), q, seed=0) as srv:
                gw = Gateway(Settings(home=home, llm_base_url=srv.url, llm_model=srv.model),
                             budget=Budget(10**6, 10**10), max_retries=0)
                t = time.perf_counter()
                res, rep = train_supervised(ds, args.model, split, seed, budget=budget, uses=ABLATION[variant],
                                            gateway=gw, round1=r1, source=srv.describe(), soft_scale=args.soft_scale,
                                            **opts)
                secs = time.perf_counter() - t
            tu = rep.get("test_unqueried", {})
            row = {"dataset": ds.name, "seed": seed, "source": "simulated", "q": q, "budget": budget,
                   "variant": variant, "status": rep["status"], "calls": rep["llm"]["usage"].get("calls", 0),
                   "calibration": rep["plan"]["calibration"], "plain": _m(r1.metrics["test"]),
                   "final": _m(res.metrics["test"]), "unqueried": tu, "val_guard": rep.get("val_guard"),
                   "effect": rep["calibration"]["added"].get("effect"), "plain_s": round(plain_s, 1),
                   "supervisor_s": round(secs, 1)}
            rows.append(row)
            print(f"  {ds.name} seed {seed} Q {q:g} budget {budget} {variant:<11} {row['status']:<9} calls "
                  f"{row['calls']:>3} AUPRC {row['plain']['auprc']:.4f} -> {row['final']['auprc']:.4f}",
                  file=sys.stderr, flush=True)
    return rows


def endpoint_rows(ds, seeds: list[int], budgets: list[int], args) -> list[dict]:
    """The configured endpoint through run_seeds_supervised (the CLI's path), wall time vs plain."""
    from finllm.config import load_settings
    from finllm.llm import get_gateway
    from finllm.llm.client import describe
    from fraud.supervisor.loop import run_seeds_supervised
    from fraud.train import run_seeds

    opts = {"epochs": args.epochs, "patience": args.patience}
    t = time.perf_counter()
    plain, _ = run_seeds(ds, args.model, "semi", seeds, **opts)
    plain_s = time.perf_counter() - t
    rows = []
    for budget in budgets:
        t = time.perf_counter()  # the gateway (and, without FINLLM_LLM_BASE_URL, the embedded server) is timed too
        sup, _ = run_seeds_supervised(ds, args.model, "semi", seeds, budget=budget, uses="all", gateway=get_gateway,
                                      **opts)
        secs = time.perf_counter() - t
        reps = sup["supervisor"]
        rows.append({"dataset": ds.name, "seeds": seeds, "source": "endpoint", "endpoint": describe(load_settings()),
                     "budget": budget, "status": [r["status"] for r in reps],
                     "calls": sum((r.get("llm") or {}).get("usage", {}).get("calls", 0) for r in reps),
                     "reasons": [r["reason"] for r in reps],
                     "seconds_per_call": [round(r["seconds"] / max(1, (r.get("llm") or {}).get("usage", {})
                                                                  .get("calls", 0)), 2) for r in reps],
                     "prompt_tokens_max": [(r.get("plan") or {}).get("prompt_tokens_max") for r in reps],
                     "plain_auprc": [round(m["test"]["auprc"], 4) for m in plain["per_seed"]],
                     "final_auprc": [round(m["test"]["auprc"], 4) for m in sup["per_seed"]],
                     "plain_s": round(plain_s, 1), "supervised_s": round(secs, 1),
                     "ratio": round(secs / plain_s, 2), "over_plain_s": round(secs - plain_s, 1)})
        print(f"  {ds.name} endpoint budget {budget}: {rows[-1]['status']} calls {rows[-1]['calls']} "
              f"wall {secs:.1f} s vs plain {plain_s:.1f} s", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per (graph, Q, budget, variant), means over seeds; then the ceiling rows."""
    from bench.supervisor_ceiling import ceiling_table

    out = ["| graph | Q | budget | uses | applied | calls | plain AUPRC | supervised AUPRC | Δ AUPRC (± sd) | "
           "Δ Rec@K | Δ AUPRC, unqueried test nodes | val guard kept plain |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["q"], r["budget"], r["variant"]) for r in rows if r["source"] == "simulated"},
                  key=lambda k: (k[0], k[3] != "all", k[1], k[2], k[3]))
    if not keys:
        out = []
    for key in keys:
        g = [r for r in rows if r["source"] == "simulated" and (r["dataset"], r["q"], r["budget"], r["variant"]) == key]
        d = np.array([r["final"]["auprc"] - r["plain"]["auprc"] for r in g])
        dk = np.array([r["final"]["rec@k"] - r["plain"]["rec@k"] for r in g])
        du = [r["unqueried"]["final_auprc"] - r["unqueried"]["round1_auprc"] for r in g
              if r["unqueried"].get("final_auprc") is not None and r["unqueried"].get("round1_auprc") is not None]
        applied = sum(r["status"] == "applied" for r in g)
        out.append(f"| {key[0]} | {key[1]:g} | {key[2]} | {key[3]} | {applied}/{len(g)} | "
                   f"{np.mean([r['calls'] for r in g]):.0f} | {np.mean([r['plain']['auprc'] for r in g]):.4f} | "
                   f"{np.mean([r['final']['auprc'] for r in g]):.4f} | {d.mean():+.4f} ± {d.std():.4f} | "
                   f"{dk.mean():+.4f} | {(np.mean(du) if du else 0.0):+.4f} | {sum(bool(r['val_guard']) for r in g)} |")
    if any(r["source"] == "ceiling" for r in rows):
        out += ["", "Ceiling (bench/supervisor_ceiling.py: no calibration cost, exact combination, no guard; "
                "not something a real endpoint run can do):", "", ceiling_table(rows)]
    for r in rows:
        if r["source"] == "endpoint":
            out.append(f"\nendpoint {r['endpoint']['base_url']} ({r['endpoint']['model']}), {r['dataset']}, seeds "
                       f"{r['seeds']}, budget {r['budget']}: {r['status']}, {r['calls']} calls; AUPRC plain "
                       f"{r['plain_auprc']} supervised {r['final_auprc']}; wall {r['supervised_s']} s vs plain "
                       f"{r['plain_s']} s ({r['ratio']}x, +{r['over_plain_s']} s)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="amazon,bitcoin")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--model", default="hsign")
    ap.add_argument("--qs", default="0.5,0.6,0.7,0.8,0.9,0.95", help="simulated verdict AUROCs ('' = none)")
    ap.add_argument("--ceiling", default="", help="comma list of Q: also the ceiling rows at those Q "
                    "(bench/supervisor_ceiling.py: every verdict on the band, exact combination, true-label row)")
    ap.add_argument("--budgets", default="50,200")
    ap.add_argument("--ablation-q", type=float, default=0.8, help="Q of the ablation rows (0: none)")
    ap.add_argument("--endpoint", action="store_true", help="also the configured endpoint (embedded by default)")
    ap.add_argument("--no-simulated", action="store_true")
    ap.add_argument("--soft-scale", type=float, default=1.0, help="weight of the verdicts' soft labels (pseudo use)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared CPU)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--out", default=str(REPO / "bench/results/supervisor_dose.json"))
    ap.add_argument("--merge", default="", help="comma list of earlier --out JSON files: print their rows as one "
                    "table into --out (runs split over processes) and run nothing")
    args = ap.parse_args(argv)
    if args.merge:
        rows = [r for f in args.merge.split(",") for r in json.loads(Path(f).read_text())["rows"]]
        text = table(rows)
        print(text)
        Path(args.out).write_text(json.dumps({"merged": args.merge.split(","), "rows": rows}, indent=1, default=str))
        Path(args.out).with_suffix(".md").write_text(text + "\n")
        return 0

    import torch

    from fraud.datasets import load_graph

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    qs = [float(q) for q in args.qs.split(",") if q.strip()]
    rows: list[dict] = []
    t0 = time.perf_counter()
    for key in args.datasets.split(","):
        ds = load_graph(DATASETS[key.strip()])
        if not args.no_simulated:
            rows += simulated_rows(ds, seeds, qs, budgets, args)
        if args.endpoint:
            rows += endpoint_rows(ds, seeds, budgets, args)
    text = table(rows)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)},
                              indent=1, default=str))
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\n{time.perf_counter() - t0:.0f} s; rows in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
