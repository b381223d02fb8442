"""Time the walk-forward combiner on stored pools: members evaluated per block of days on the block's own days
plus the history they need (the default) against the whole panel per block (the former way), same run.

    python bench/bench_pool_scoring.py --rows bench/results/mining_risk_seeking_us.json --seeds 0,1 \
        --results pool_scoring_us

Each pool of the bench rows (``pool_tokens`` + ``pool`` weights, as ``bench_mining.py`` writes them) is scored with
:func:`factors.combiner.combiner_signals` both ways, the order alternating between pools; the signals must agree to float32
rounding (windowed moments such as ``Std`` accumulate from the evaluated panel's first day, so a block's values
can differ from the whole panel's in the last bits; the largest difference is reported). ``--double`` also times two pools together (240 members: a ``--jobs 2`` run's pool).
Results: ``bench/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _scorer(data: str, splits: dict[str, str], tokens: list[list[str]]):  # noqa: ANN202 - SplitScorer
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    cfg = MineConfig(data=data, **splits)
    panel, sp = load_for_mining(cfg)
    return pool_scorer([{"tokens": t} for t in tokens], panel, sp, cfg)


def _time(sc, members, block_panels: bool) -> tuple[float, dict[str, torch.Tensor]]:  # noqa: ANN001
    from factors.combiner import combiner_signals

    sc.ev.clear_cache()
    t0 = time.perf_counter()
    sig, skipped = combiner_signals(sc, members, block_panels=block_panels)
    if skipped:
        raise SystemExit(f"re-fits skipped: {skipped}")
    return time.perf_counter() - t0, sig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True, help="a bench_mining results JSON (bench/results/mining_*.json)")
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--seeds", default="0,1", help="comma list of the rows' seeds to score")
    ap.add_argument("--double", action="store_true", help="also two pools together (the first two seeds)")
    ap.add_argument("--results", default=None, help="write bench/results/NAME.json and .md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    doc = json.loads(Path(a.rows).read_text())
    seeds = [int(s) for s in a.seeds.split(",")]
    pools = {r["seed"]: [(list(t), float(w)) for t, (w, _) in zip(r["pool_tokens"], r["pool"])]
             for r in doc["rows"] if r["seed"] in seeds}
    todo = [(f"seed {s}", pools[s]) for s in seeds if s in pools]
    if a.double and len(todo) >= 2:
        todo.append((f"seeds {seeds[0]}+{seeds[1]}", todo[0][1] + todo[1][1]))
    sc = _scorer(a.data, doc["splits"], [t for _, ms in todo for t, _ in ms])
    out = []
    for i, (name, members) in enumerate(todo):
        order = (True, False) if i % 2 == 0 else (False, True)
        times, sigs = {}, {}
        for block in order:
            times[block], sigs[block] = _time(sc, members, block)
        diff = max(float((sigs[True][k] - sigs[False][k]).nan_to_num().abs().max()) for k in sigs[True])
        same_nan = all(torch.equal(sigs[True][k].isnan(), sigs[False][k].isnan()) for k in sigs[True])
        row = {"pool": name, "members": len(members), "whole_panel_s": round(times[False], 1),
               "block_panels_s": round(times[True], 1), "speedup": round(times[False] / times[True], 2),
               "max_abs_diff": diff, "same_nans": same_nan}
        print(json.dumps(row), file=sys.stderr, flush=True)
        out.append(row)
    if not all(r["same_nans"] and r["max_abs_diff"] < 1e-4 for r in out):
        raise SystemExit("the two ways gave different signals")
    if a.results:
        res = ROOT / "bench" / "results"
        cmd = "python bench/bench_pool_scoring.py " + " ".join(sys.argv[1:])
        (res / f"{a.results}.json").write_text(json.dumps({"command": cmd, "rows": out}, indent=2))
        lines = [f"# Walk-forward combiner: block panels vs the whole panel per block\n", f"`{cmd}`\n",
                 f"panel {a.data}, splits {doc['splits']}, {sc.mask.shape[0]} days x {sc.mask.shape[1]} stocks, "
                 "1 torch thread, same process; max |difference| of the signals (every combiner, every day) per row\n",
                 "| pool | members | whole panel per block (s) | block panels (s) | speed-up | max diff |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r['pool']} | {r['members']} | {r['whole_panel_s']} | {r['block_panels_s']} | {r['speedup']}x "
                  f"| {r['max_abs_diff']:.1e} |" for r in out]
        (res / f"{a.results}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
