"""Is a variant's validation gain bigger than the validation window's own noise? Re-scores a mining bench's pools.

The paired tests of ``bench_mining.py`` are over seeds: they measure the search's luck, not the sampling noise of
the validation window, which every seed shares (two years of daily RankICs of a 20-day return are about 25
independent observations). A mining variant can so beat the default on valid in 5/5 seeds by a margin that the
window alone could produce. This bench asks the window's question: for each variant of a bench output
(``--variants``, labels as ``bench_mining.py --variant`` writes them) against its base (``--base``):

* every run's pool is re-scored through the library (:func:`factors.combiner.pool_signal`, with the combiner
  the run chose, or the one a label names: ``rl@fitted``), giving its daily RankIC series on every split;
* per day, the variant's RankIC minus the base's, averaged over the seeds both have (seed-paired);
* per split: the mean of that daily difference and its Newey-West t-statistic (Bartlett, ``horizon`` lags:
  the daily ICs of an h-day return overlap by h - 1 days), plus the seeds where the variant is ahead.

The rule the miner's defaults follow since stop 23 (README, "Mining ablation"): a variant replaces the default
only when it is ahead on **valid** in a majority of seeds **and** the valid difference's Newey-West t >= 2.
Test is reported, never used.

    python bench/bench_window_test.py --rows bench/results/mining_bag_icir_us.json --base rl \\
        --variants rl_bag,rl_icir --results window_bag_icir_us
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from factors.splits import AUTO

if TYPE_CHECKING:
    from factors.scoring import SplitScorer

T_RULE = 2.0


def _series(sc: SplitScorer, row: dict, combiner: str | None = None) -> torch.Tensor:
    """Daily RankIC (D,) of one bench row's pool, combined as the run chose (or by ``combiner``)."""
    from factors.combiner import pool_signal
    from factors.metrics import rank_ic_series

    members = [(t, float(w)) for t, (w, _) in zip(row["pool_tokens"], row["pool"])]
    x, _ = pool_signal(sc, members, combiner or (row.get("combiner") or {}).get("chosen", "auto"))
    return rank_ic_series(sc.masked(x), sc.target, sc.mask)


def compare(series: dict[str, dict[int, torch.Tensor]], days: dict[str, torch.Tensor], base: str, variant: str,
            horizon: int) -> dict[str, dict[str, float]]:
    """Per split: base and variant mean RankIC over the common seeds, the seed-averaged daily difference's
    mean and Newey-West t, and the seeds where the variant is ahead."""
    from factors.metrics import newey_west_t

    seeds = sorted(set(series[base]) & set(series[variant]))
    out: dict[str, dict[str, float]] = {}
    for name, d in days.items():
        b = torch.stack([series[base][s][d] for s in seeds])  # (seeds, days of the split)
        v = torch.stack([series[variant][s][d] for s in seeds])
        diff = torch.nanmean(v - b, 0)
        per_seed = torch.nanmean(v, 1) - torch.nanmean(b, 1)
        out[name] = {"seeds": len(seeds), "base": float(torch.nanmean(b)), "variant": float(torch.nanmean(v)),
                     "diff": float(torch.nanmean(diff)), "t_nw": newey_west_t(diff, horizon),
                     "ahead": int((per_seed > 0).sum())}
    return out


def passes(valid: dict[str, float]) -> bool:
    """The defaults' rule: ahead on valid in a majority of seeds and a valid gain with Newey-West t >= 2."""
    return valid["ahead"] * 2 > valid["seeds"] and valid["diff"] > 0 and valid["t_nw"] >= T_RULE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True, nargs="+",
                    help="bench_mining.py outputs (bench/results/NAME.json or <out>/mining_rows.json), e.g. a "
                         "--variants-only bench and the bench holding its base rows")
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--base", default="rl")
    ap.add_argument("--variants", required=True,
                    help="comma list of bench labels, e.g. rl_bag,rl_icir; LABEL@COMBINER re-combines that label's "
                         "pools (e.g. --base rl@fitted --variants rl: the combiner the runs chose vs train weights)")
    ap.add_argument("--results", help="also write bench/results/NAME.md and .json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    doc = []
    for f in a.rows:
        d = json.loads(Path(f).read_text())
        doc += d["rows"] if isinstance(d, dict) else d
    labels = [a.base, *[v.strip() for v in a.variants.split(",") if v.strip()]]
    method = {lab: lab.partition("@")[0] for lab in labels}  # "rl@fitted": the rl rows, combined by "fitted"
    rows = [r for r in doc if r["method"] in method.values() and r.get("pool_tokens")]
    missing = [lab for lab in labels if not any(r["method"] == method[lab] for r in rows)]
    if missing:
        print(f"{', '.join(a.rows)}: no rows labelled {', '.join(missing)}", file=sys.stderr)
        return 2
    cfg = MineConfig(data=a.data, horizon=a.horizon, train=AUTO, valid=AUTO, test=AUTO)
    panel, splits = load_for_mining(cfg)
    sc = pool_scorer([], panel, splits, cfg, extra=[t for r in rows for t in r["pool_tokens"]])
    series: dict[str, dict[int, torch.Tensor]] = {lab: {} for lab in labels}
    for lab in labels:
        for r in (r for r in rows if r["method"] == method[lab]):
            series[lab][int(r["seed"])] = _series(sc, r, lab.partition("@")[2] or None)
            print(f"  scored {lab} seed {r['seed']}", file=sys.stderr, flush=True)
    days = {name: d for name, d in sc.days.items() if name in ("valid", "test")}
    results = {v: compare(series, days, a.base, v, a.horizon) for v in labels[1:]}
    lines = [f"# Window test: {', '.join(labels[1:])} vs {a.base} ({', '.join(Path(f).name for f in a.rows)}; "
             f"{Path(a.data).name}, "
             f"{a.horizon}-day target)", "",
             "Seed-paired daily RankIC difference (variant − base, averaged over seeds per day); t: Newey-West, "
             f"{a.horizon} lags. Rule: ahead on valid in a majority of seeds and valid t >= {T_RULE}.", "",
             "| variant | split | base RankIC | variant RankIC | difference | t (NW) | seeds ahead | passes |",
             "|---|---|---|---|---|---|---|---|"]
    for v, res in results.items():
        for name, s in res.items():
            ok = ("**yes**" if passes(s) else "no") if name == "valid" else "(test: reported only)"
            lines.append(f"| {v} | {name} | {s['base']:.4f} | {s['variant']:.4f} | {s['diff']:+.4f} | "
                         f"{s['t_nw']:+.2f} | {s['ahead']}/{s['seeds']} | {ok} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.results:
        res_dir = Path(__file__).resolve().parent / "results"
        (res_dir / f"{a.results}.md").write_text(text)
        (res_dir / f"{a.results}.json").write_text(json.dumps(
            {"rows": a.rows, "base": a.base, "horizon": a.horizon, "rule_t": T_RULE,
             "results": {v: {**res, "passes": passes(res["valid"])} for v, res in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
