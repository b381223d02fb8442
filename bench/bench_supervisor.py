"""Benchmark: does the LLM supervisor help a GNN fraud detector with 100 labels (and with noisy labels)?

Semi-supervised GADBench setting (20 fraud + 80 normal training labels, the same for validation, the
rest test), the same GNN and seeds for every variant, printed side by side as ratios to the baseline:

  none                GNN round 1 only (the baseline)
  pseudo|noise|edges  one use of the verdicts, with calibrated trust (the product default)
  all                 the three uses together, calibrated trust
  all-uncalibrated    the three uses with trust forced to 1 and no validation guard: what the same
                      verdicts would do to the detector if nobody measured them first

Noisy labels: 20% of the training labels are flipped (validation labels stay clean; they are what
trust is measured on), then none / all / all-uncalibrated again; recovery = share of the AUPRC lost
to the noise that the supervisor wins back.

Every variant plans its queries for all three uses, so all variants of one (dataset, seed) see the same
verdicts (later variants are cache hits: the LLM calls column counts only new HTTP calls).

Local (embedded SmolLM2-135M, the default):
    python bench/bench_supervisor.py --datasets amazon,bitcoin --seeds 0 --budget 16
Stronger endpoint (any OpenAI-compatible server; same command, larger budget):
    FINLLM_LLM_BASE_URL=http://localhost:11434/v1 FINLLM_LLM_MODEL=qwen2.5:7b-instruct \\
        python bench/bench_supervisor.py --datasets amazon,bitcoin --seeds 0,1,2 --budget 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"amazon": REPO / "data/fraud/amazon_upu.mat", "bitcoin": REPO / "data/fraud/soc-sign-bitcoinotc.csv"}


def flip_train_labels(ds, split, frac: float, seed: int):
    """A copy of ``ds`` with ``frac`` of the training labels flipped (class-stratified, fixed seed)."""
    import copy

    noisy = copy.copy(ds)
    noisy.data = ds.data.clone()
    g = torch.Generator().manual_seed(10_000 + seed)
    y = noisy.data.y
    flipped = []
    for c in (0, 1):
        idx = split.train[y[split.train] == c]
        k = int(round(frac * idx.numel()))
        flipped.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    f = torch.cat(flipped)
    y[f] = 1 - y[f]
    return noisy, f


def _m(res) -> dict:
    return {k: round(float(res.metrics["test"][k]), 4) for k in ("auprc", "auroc")} | {
        "val_auprc": round(float(res.metrics["val"]["auprc"]), 4)}


def run_variants(ds, split, seed, args, gw, tag: str, variants: list[tuple[str, str, float | None, bool]],
                 progress: bool) -> list[dict]:
    from fraud.supervisor.loop import supervisor_summary, train_supervised
    from fraud.train import train_model

    train_opts = {"epochs": args.epochs, "patience": args.patience}
    t = time.perf_counter()
    r1 = train_model(ds, args.model, split, seed, **train_opts)
    rows = [{"dataset": ds.name, "seed": seed, "labels": tag, "variant": "none", **_m(r1), "llm_calls": 0,
             "reliability": None, "status": "baseline", "seconds": round(time.perf_counter() - t, 1)}]
    for name, uses, override, guard in variants:
        before = gw.usage()["calls"]
        t = time.perf_counter()
        res, rep = train_supervised(ds, args.model, split, seed, budget=args.budget, uses=uses, gateway=gw,
                                    round1=r1, plan_uses="pseudo,noise,edges", trust_override=override,
                                    val_guard=guard, progress=progress, samples=args.samples, **train_opts)
        s = supervisor_summary(rep)
        row = {"dataset": ds.name, "seed": seed, "labels": tag, "variant": name, **_m(res),
               "llm_calls": gw.usage()["calls"] - before,
               "reliability": rep.get("trust", {}).get("node", {}).get("weight"),
               "status": rep["status"], "seconds": round(time.perf_counter() - t, 1)}
        if "round2" in rep:
            row["round2_test_auprc"] = round(float(rep["round2"]["test"]["auprc"]), 4)
        row["report"] = s
        rows.append(row)
        print(f"  {ds.name} seed {seed} {tag:<6} {name:<17} AUPRC {row['auprc']:.4f} AUROC {row['auroc']:.4f} "
              f"calls {row['llm_calls']:>3} reliability {row['reliability']} status {row['status']}",
              file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="amazon,bitcoin")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--model", default="sage")
    ap.add_argument("--budget", type=int, default=16, help="verdict requests per (dataset, seed, label set)")
    ap.add_argument("--samples", type=int, default=None, help="self-consistency samples (default: auto)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.2, help="share of training labels flipped (0: skip)")
    ap.add_argument("--out", default=str(REPO / "bench/results/supervisor.json"))
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)

    from finllm.llm import Budget, get_gateway
    from finllm.llm.client import describe
    from fraud.datasets import load_graph
    from fraud.splits import make_split

    gw = get_gateway(budget=Budget(100_000, 100_000_000))  # the bench's own --budget is the limit that matters
    endpoint = describe(gw.settings)
    print(f"endpoint: {endpoint['base_url']} model {endpoint['model']}", file=sys.stderr)
    clean_variants = [("pseudo", "pseudo", None, True), ("noise", "noise", None, True), ("edges", "edges", None, True),
                      ("all", "pseudo,noise,edges", None, True), ("all-uncalibrated", "pseudo,noise,edges", 1.0, False)]
    noisy_variants = [("all", "pseudo,noise,edges", None, True), ("all-uncalibrated", "pseudo,noise,edges", 1.0, False)]
    rows: list[dict] = []
    t0 = time.perf_counter()
    for key in args.datasets.split(","):
        ds = load_graph(DATASETS[key.strip()])
        for seed in (int(s) for s in args.seeds.split(",")):
            split = make_split(ds, "semi", seed)
            rows += run_variants(ds, split, seed, args, gw, "clean", clean_variants, args.progress)
            if args.noise > 0:
                noisy, flipped = flip_train_labels(ds, split, args.noise, seed)
                rows += run_variants(noisy, split, seed, args, gw, f"flip{int(args.noise * 100)}", noisy_variants,
                                     args.progress)
    # ---- side-by-side table: ratios to the baseline of the same dataset/seed/label set ----
    base = {(r["dataset"], r["seed"], r["labels"]): r for r in rows if r["variant"] == "none"}
    print(f"\n{'dataset':<20} {'seed':>4} {'labels':<7} {'variant':<17} {'AUPRC':>7} {'xbase':>6} {'AUROC':>7} "
          f"{'xbase':>6} {'calls':>5} {'reliab.':>7}  status")
    for r in rows:
        b = base[(r["dataset"], r["seed"], r["labels"])]
        rel = "-" if r["reliability"] is None else f"{r['reliability']:.3f}"
        print(f"{r['dataset']:<20} {r['seed']:>4} {r['labels']:<7} {r['variant']:<17} {r['auprc']:>7.4f} "
              f"{r['auprc'] / b['auprc']:>6.3f} {r['auroc']:>7.4f} {r['auroc'] / b['auroc']:>6.3f} "
              f"{r['llm_calls']:>5} {rel:>7}  {r['status']}")
    recov = []
    for (dsn, seed, labels), b in base.items():
        if labels == "clean":
            continue
        clean = base[(dsn, seed, "clean")]["auprc"]
        lost = clean - b["auprc"]
        for r in rows:
            if (r["dataset"], r["seed"], r["labels"]) == (dsn, seed, labels) and r["variant"] != "none":
                # recovery is only defined when the noise cost AUPRC (with 100 labels one flip run can even gain)
                rec = (r["auprc"] - b["auprc"]) / lost if lost > 0.01 else float("nan")
                recov.append({"dataset": dsn, "seed": seed, "variant": r["variant"], "clean_auprc": clean,
                              "noisy_auprc": b["auprc"], "supervised_auprc": r["auprc"], "recovered": round(rec, 3)})
    if recov:
        print("\nnoisy labels: share of the AUPRC lost to label noise that the supervisor recovers")
        for r in recov:
            print(f"  {r['dataset']:<20} seed {r['seed']} {r['variant']:<17} clean {r['clean_auprc']:.4f} "
                  f"noisy {r['noisy_auprc']:.4f} supervised {r['supervised_auprc']:.4f} -> recovered "
                  + ("n/a (the noise cost no AUPRC)" if r["recovered"] != r["recovered"] else f"{r['recovered']:+.3f}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "endpoint": endpoint, "rows": rows, "recovery": recov,
                               "llm_usage": gw.usage(), "seconds": round(time.perf_counter() - t0, 1)},
                              indent=1, default=str))
    print(f"\nLLM usage {gw.usage()}; {time.perf_counter() - t0:.0f} s; details in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
