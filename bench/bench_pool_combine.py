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

* ``refit250`` ... ``refit1000s``: the library's walk-forward re-fits (:mod:`factors.combiner`): on each
  valid/test day t, the members' weights re-fitted by ridge on the W trading days whose targets are realised
  by t (days < t - h, no look-ahead), shrunk toward the miner's fitted weights;
* ``joint_lam``: one ridge fit over every member (all restarts' members together) on the purged train days;
* ``valid_chosen``: per pool, the miner's ``--combiner auto`` rule (the best valid RankIC of ``fitted`` and
  the re-fits); its test figure is the honest estimate of that rule.

With ``--lgbm``, LightGBM on the Alpha158-style set trained once vs re-trained walk-forward (``once``,
``walk_W``, ``valid_chosen``): the counterpart of the linear re-fits, so the table compares like with like.

Only the valid figures may choose a combiner; test is reported for all.

    python bench/bench_pool_combine.py --rows bench/results/mining_5seeds.json --method rl
    python bench/bench_pool_combine.py --rows bench/results/mining_crypto_5seeds.json \\
        --data data/market/crypto_daily.parquet --method rl
    python bench/bench_pool_combine.py --lgbm --data data/market/crypto_daily.parquet
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


JOINT = (1.0, 100.0, 1000.0)


def _valid_choice(valid: dict[str, float]) -> str:
    """The ``valid_chosen`` rule: the library's ``auto`` combiner rule over ``fitted`` and its re-fits."""
    from factors.combiner import REFITS, choose_on_valid

    names = ["fitted", *(r.name for r in REFITS)]
    return choose_on_valid({k: {"valid": valid[k]} for k in names})


def _reweighted(sc, members: list[tuple[list[str], float]], fitted: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ``--reweight`` signals (D, S) of one pool: the library's walk-forward re-fits
    (:func:`factors.combiner.combiner_signals`) and joint ridge fits over every member on the purged train days
    (:data:`JOINT`)."""
    from factors.combiner import combiner_signals

    sig, skipped = combiner_signals(sc, members)
    if skipped:
        raise SystemExit(f"re-fits skipped: {skipped}")
    out = {k: v for k, v in sig.items() if k != "fitted"}
    ok = torch.isfinite(sc.target) & sc.mask
    tr = sc.days["train"] & ok.any(1)  # the purged train days
    m = len(members)
    tz = torch.where(ok, sc.zscore(sc.target), torch.zeros(())).double()
    G_tr, b_tr = torch.zeros(m, m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    idx = tr.nonzero().flatten()
    for i in range(0, len(idx), 200):  # blocks of train days, so (days, S, M) stays small
        d = idx[i:i + 200]
        Z = torch.stack([sc.zscore(sc.ev.evaluate(t))[d] for t, _ in members], -1)
        Z = torch.where(ok[d][..., None], Z, torch.zeros(())).double()
        G_tr += torch.einsum("dsm,dsn->mn", Z, Z)
        b_tr += torch.einsum("dsm,ds->m", Z, tz[d])
    n_tr, eye = float(ok[tr].sum()), torch.eye(m, dtype=torch.float64)
    for lam in JOINT:
        w = torch.linalg.solve(G_tr + lam * n_tr / 100 * eye, b_tr).float()
        out[f"joint_{lam:g}"] = sc.combine([(t, float(wi)) for (t, _), wi in zip(members, w)])
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


LGBM_WINDOWS = (250, 500, 1000)


def _lgbm(a: argparse.Namespace) -> int:
    """``--lgbm``: LightGBM on the Alpha158-style set trained once (train, early-stopped on valid), and re-trained
    walk-forward every ``--every`` days on the last W realised days (:data:`LGBM_WINDOWS`; rounds = the train-once
    fit's best iteration), per seed; ``valid_chosen`` picks per seed on valid, as the pools' ``auto`` combiner."""
    from factors.handcrafted import alpha158_features, fit_alpha158_lgbm
    from factors.lgbm_baseline import walk_forward_predict
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    cfg = MineConfig(data=a.data, horizon=a.horizon, train=AUTO, valid=AUTO, test=AUTO)
    panel, splits = load_for_mining(cfg)
    sc = pool_scorer([], panel, splits, cfg)
    f = alpha158_features(sc)
    label = torch.where(f.label_mask, f.target_z, torch.full((), float("nan")))
    first = int(sc.days["valid"].nonzero()[0])
    out: dict[str, list[dict[str, float]]] = {}
    picks: list[str] = []
    for seed in range(a.seeds):
        once, info = fit_alpha158_lgbm(sc, f, seed=seed, threads=1)
        out.setdefault("once", []).append(_rank_ic(sc, once))
        for win in LGBM_WINDOWS:
            wf = walk_forward_predict(f.feats, label, sc.mask, first, sc.horizon, window=win, every=a.every,
                                      rounds=max(20, info["best_iteration"]), seed=seed, num_threads=1)
            x = torch.where(torch.isfinite(wf), wf, once)
            out.setdefault(f"walk_{win}", []).append(_rank_ic(sc, sc.masked(x)))
        pick = max(["once", *(f"walk_{w}" for w in LGBM_WINDOWS)], key=lambda k: out[k][-1]["valid"])
        out.setdefault("valid_chosen", []).append(out[pick][-1])
        picks.append(pick)
        print(f"  seed {seed}: {pick}", file=sys.stderr, flush=True)
    print(f"{Path(a.data).name}, LightGBM on the Alpha158-style set ({len(f.names)} features), seeds 0-{a.seeds - 1}; "
          f"walk-forward re-training every {a.every} days")
    print(f"{'model':14} {'valid RankIC':>18} {'test RankIC':>18}")
    for name, vals in out.items():
        v, t = np.array([d["valid"] for d in vals]), np.array([d["test"] for d in vals])
        sd = lambda z: f" ± {z.std(ddof=1):.4f}" if len(z) > 1 else ""  # noqa: E731
        print(f"{name:14} {v.mean():>+10.4f}{sd(v):>8} {t.mean():>+10.4f}{sd(t):>8}")
    print(f"{'':14} valid_chosen picked: {', '.join(picks)}")
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
    ap.add_argument("--lgbm", action="store_true",
                    help="LightGBM on the Alpha158-style set: trained once vs re-trained walk-forward (the fair "
                         "counterpart of the re-fitted linear signals)")
    ap.add_argument("--seeds", type=int, default=5, help="--lgbm: seeds 0..n-1")
    ap.add_argument("--every", type=int, default=60, help="--lgbm: days between walk-forward re-trainings")
    ap.add_argument("--subsets", action="store_true",
                    help="seeds_k over every k-subset of the seeds (mean ± std), not only the first k")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    if a.alpha158:
        return _alpha158(a)
    if a.lgbm:
        return _lgbm(a)
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
