"""How should mined pools be combined out of sample? Re-scores pools a mining bench already found (no re-mining).

For the pools of one method in a ``bench_mining.py`` output (``bench/results/<name>.json`` of ``--results``, or
``<out>/mining_rows.json``), on the same panel and
splits (the project's default splits for the market file), valid and test RankIC of:

* ``fitted``: each pool with the weights the miner fitted on train (what a run reports);
* ``equal``: each pool's members z-scored and averaged with the sign of their train IC (no fitted weights);
* ``seeds_k``: the average of the first k seeds' ``fitted`` signals (each z-scored per day): a cross-seed
  ensemble, which costs k mining runs (k x the CPU of one row); with ``--subsets``, every k-subset of the
  seeds (mean ± std over subsets).

Only the valid figures may choose a combiner; test is reported for all.

    python bench/bench_pool_combine.py --rows bench/results/mining_5seeds.json --method rl
    python bench/bench_pool_combine.py --rows bench/results/mining_crypto_5seeds.json \\
        --data data/market/crypto_daily.parquet --method rl
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from factors.splits import AUTO


def _rank_ic(sc, x: torch.Tensor) -> dict[str, float]:
    rep = sc.report(x)
    return {k: rep[k]["rank_ic"] for k in ("valid", "test")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True, help="bench_mining.py output: bench/results/NAME.json or <out>/mining_rows.json")
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--method", default="rl")
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--subsets", action="store_true",
                    help="seeds_k over every k-subset of the seeds (mean ± std), not only the first k")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    doc = json.loads(Path(a.rows).read_text())
    doc = doc["rows"] if isinstance(doc, dict) else doc  # a --results JSON, or <out>/mining_rows.json
    rows = sorted((r for r in doc if r["method"] == a.method and r.get("pool_tokens")), key=lambda r: r["seed"])
    if not rows:
        print(f"{a.rows}: no rows of method {a.method!r}", file=sys.stderr)
        return 2
    cfg = MineConfig(data=a.data, horizon=a.horizon, train=AUTO, valid=AUTO, test=AUTO)
    panel, splits = load_for_mining(cfg)
    tokens = [t for r in rows for t in r["pool_tokens"]]
    sc = pool_scorer([], panel, splits, cfg, extra=tokens)
    out: dict[str, list[dict[str, float]]] = {"fitted": [], "equal": []}
    fitted = []
    for r in rows:
        members = [(t, w) for t, (w, _) in zip(r["pool_tokens"], r["pool"])]
        x = sc.combine(members)
        fitted.append(sc.zscore(x))
        out["fitted"].append(_rank_ic(sc, x))
        signs = [float(np.sign(sc.member_metrics(t)["train"]["ic"] or 0.0)) for t, _ in members]
        out["equal"].append(_rank_ic(sc, sc.combine([(t, s / len(members)) for (t, _), s in zip(members, signs)])))
    for k in range(2, len(rows) + 1):
        picks = combinations(range(len(rows)), k) if a.subsets else [tuple(range(k))]
        out[f"seeds_{k}"] = [_rank_ic(sc, sc.masked(torch.nanmean(torch.stack([fitted[i] for i in c]), 0)))
                             for c in picks]
    print(f"{Path(a.data).name}, {a.method} pools of seeds {[r['seed'] for r in rows]}; splits "
          + ", ".join(sp.text() for sp in splits) + "; RankIC mean ± std over seeds (seeds_k: over "
          + ("every k-subset of the seeds)" if a.subsets else "one ensemble of the first k seeds)"))
    print(f"{'combiner':10} {'valid RankIC':>18} {'test RankIC':>18}")
    for name, vals in out.items():
        v, t = np.array([d["valid"] for d in vals]), np.array([d["test"] for d in vals])
        sd = lambda z: f" ± {z.std(ddof=1):.4f}" if len(z) > 1 else ""  # noqa: E731
        print(f"{name:10} {v.mean():>+10.4f}{sd(v):>8} {t.mean():>+10.4f}{sd(t):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
