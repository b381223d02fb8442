"""How should mined pools be combined out of sample? Re-scores pools a mining bench already found (no re-mining).

For the pools of one method in a ``bench_mining.py`` output (``bench/results/<name>.json`` of ``--results``, or
``<out>/mining_rows.json``), on the same panel and
splits (the project's default splits for the market file), valid and test RankIC of:

* ``fitted``: each pool with the weights the miner fitted on train (what a run reports);
* ``equal``: each pool's members z-scored and averaged with the sign of their train IC (no fitted weights);
* ``seeds_k``: the average of the first k seeds' ``fitted`` signals (each z-scored per day): a cross-seed
  ensemble, which costs k mining runs (k x the CPU of one row); with ``--subsets``, every k-subset of the
  seeds (mean ± std over subsets).

With ``--reweight`` (issue 17's "dynamic re-weighting" and "one fit over every member" ablations), per pool:

* ``trailing_W_lam``: on each valid/test day t, the members' weights re-fitted by ridge least squares of the
  day-z-scored target on the members over the W trading days whose targets are realised by t (days < t - h,
  no look-ahead), shrunk toward the miner's fitted weights (ridge ``lam`` x 1% of the samples);
* ``joint_lam``: one ridge fit over every member (all restarts' members together) on the purged train days;
* ``valid_chosen``: per pool, whichever of ``fitted`` and the ``trailing`` variants has the best valid RankIC
  (the rule a miner could apply; its test figure is the honest estimate of that rule).

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


TRAILING = ((250, 10.0), (500, 10.0), (1000, 10.0), (1000, 1000.0))
JOINT = (1.0, 100.0, 1000.0)


def _valid_choice(valid: dict[str, float]) -> str:
    """The ``valid_chosen`` rule: of ``fitted`` and the trailing re-fits, the best valid RankIC."""
    return max(["fitted"] + [f"trailing_{w}_{lam:g}" for w, lam in TRAILING], key=lambda k: valid[k])


def _reweighted(sc, members: list[tuple[list[str], float]], fitted: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ``--reweight`` signals (D, S) of one pool: trailing ridge re-fits (:data:`TRAILING`: window, ridge)
    and joint ridge fits on the purged train days (:data:`JOINT`). Gram matrices (D, M, M) are summed per day
    in float64."""
    h = sc.horizon
    ok = torch.isfinite(sc.target) & sc.mask
    first = int(sc.days["valid"].nonzero()[0])  # the first valid day
    # every day, as the joint fit reads all of train (about 2 GB for 120 members on the US panel)
    Z = torch.stack([sc.zscore(sc.ev.evaluate(t)) for t, _ in members], -1)  # (D, S, M)
    Z = torch.where(ok[..., None], Z, torch.zeros(()))
    tz = torch.where(ok, sc.zscore(sc.target), torch.zeros(())).double()
    m = Z.shape[-1]
    eye = torch.eye(m, dtype=torch.float64)
    G = torch.cat([torch.einsum("dsm,dsn->dmn", Z[i:i + 100].double(), Z[i:i + 100].double())
                   for i in range(0, len(Z), 100)])
    b = torch.cat([torch.einsum("dsm,ds->dm", Z[i:i + 100].double(), tz[i:i + 100]) for i in range(0, len(Z), 100)])
    cum = lambda v: torch.cat([torch.zeros_like(v[:1]), v.cumsum(0)])  # noqa: E731
    Gc, bc, nc = cum(G), cum(b), cum(ok.sum(1).double())
    w_fit = torch.tensor([w for _, w in members], dtype=torch.float64)
    out: dict[str, torch.Tensor] = {}
    for win, lam in TRAILING:
        wt = torch.zeros(len(Z), m, dtype=torch.float64)
        for d in range(first - 5, len(Z)):
            hi, lo = d - h, max(0, d - h - win)  # targets of days < t - h are realised by day t
            Gw, bw, n = Gc[hi] - Gc[lo], bc[hi] - bc[lo], float(nc[hi] - nc[lo])
            if n < 10 * m:
                continue
            w0 = w_fit * float(bw @ w_fit) / max(float(w_fit @ Gw @ w_fit), 1e-12)  # the fitted direction, LS scale
            wt[d] = torch.linalg.solve(Gw + lam * n / 100 * eye, bw + lam * n / 100 * w0)
        sig = fitted.clone()
        live = wt.abs().sum(1) > 0
        sig[live] = torch.einsum("dsm,dm->ds", Z[live], wt[live].float())
        out[f"trailing_{win}_{lam:g}"] = sc.masked(sig)
    tr = sc.days["train"]  # the purged train days
    G_tr, b_tr, n_tr = G[tr].sum(0), b[tr].sum(0), float(ok[tr].sum())
    for lam in JOINT:
        w = torch.linalg.solve(G_tr + lam * n_tr / 100 * eye, b_tr).float()
        sig = torch.zeros_like(fitted)
        for (t, _), wi in zip(members, w):
            sig.add_(sc.zscore(sc.ev.evaluate(t)), alpha=float(wi))
        out[f"joint_{lam:g}"] = sc.masked(sig)
    return out


def _alpha158(a: argparse.Namespace) -> int:
    """``--alpha158``: the Alpha158-style linear baseline (ridge on train, as in bench_mining.py) as a 'pool' of
    its features with their fitted weights, through the same re-weightings (one row: it has no seed)."""
    from factors.handcrafted import alpha158_features, alpha158_linear_weights, alpha158_style
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    cfg = MineConfig(data=a.data, horizon=a.horizon, train=AUTO, valid=AUTO, test=AUTO)
    panel, splits = load_for_mining(cfg)
    sc = pool_scorer([], panel, splits, cfg)  # as bench_mining.py scores the baseline
    texts = list(alpha158_style().values())  # the order of alpha158_features' rows
    w = alpha158_linear_weights(sc, alpha158_features(sc))
    members = [(t, float(wi)) for t, wi in zip(texts, w)]
    x = sc.combine(members)
    out = {"fitted": _rank_ic(sc, x), **{k: _rank_ic(sc, v) for k, v in _reweighted(sc, members, x).items()}}
    print(f"{Path(a.data).name}, Alpha158-style linear ({len(texts)} features, ridge on train)")
    print(f"{'combiner':20} {'valid RankIC':>12} {'test RankIC':>12}")
    for k, v in out.items():
        print(f"{k:20} {v['valid']:>+12.4f} {v['test']:>+12.4f}")
    pick = _valid_choice({k: v["valid"] for k, v in out.items()})
    print(f"{'valid_chosen':20} {out[pick]['valid']:>+12.4f} {out[pick]['test']:>+12.4f}  ({pick})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="bench_mining.py output: bench/results/NAME.json or <out>/mining_rows.json")
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--method", default="rl")
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--reweight", action="store_true", help="also the trailing and joint ridge re-weightings")
    ap.add_argument("--alpha158", action="store_true",
                    help="re-weight the Alpha158-style linear baseline instead of mined pools (the same re-fits, "
                         "for a fair comparison)")
    ap.add_argument("--subsets", action="store_true",
                    help="seeds_k over every k-subset of the seeds (mean ± std), not only the first k")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    if a.alpha158:
        return _alpha158(a)
    if not a.rows:
        ap.error("--rows is required (unless --alpha158)")
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
        if a.reweight:
            for name, sig in _reweighted(sc, members, x).items():
                out.setdefault(name, []).append(_rank_ic(sc, sig))
            pick = _valid_choice({k: v[-1]["valid"] for k, v in out.items() if k != "chosen"})
            out.setdefault("valid_chosen", []).append(out[pick][-1])
            out.setdefault("chosen", []).append(pick)
    for k in range(2, len(rows) + 1):
        picks = combinations(range(len(rows)), k) if a.subsets else [tuple(range(k))]
        out[f"seeds_{k}"] = [_rank_ic(sc, sc.masked(torch.nanmean(torch.stack([fitted[i] for i in c]), 0)))
                             for c in picks]
    print(f"{Path(a.data).name}, {a.method} pools of seeds {[r['seed'] for r in rows]}; splits "
          + ", ".join(sp.text() for sp in splits) + "; RankIC mean ± std over seeds (seeds_k: over "
          + ("every k-subset of the seeds)" if a.subsets else "one ensemble of the first k seeds)"))
    print(f"{'combiner':10} {'valid RankIC':>18} {'test RankIC':>18}")
    for name, vals in out.items():
        if name == "chosen":
            print(f"{'':10} valid_chosen picked: {', '.join(vals)}")
            continue
        v, t = np.array([d["valid"] for d in vals]), np.array([d["test"] for d in vals])
        sd = lambda z: f" ± {z.std(ddof=1):.4f}" if len(z) > 1 else ""  # noqa: E731
        print(f"{name:10} {v.mean():>+10.4f}{sd(v):>8} {t.mean():>+10.4f}{sd(t):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
