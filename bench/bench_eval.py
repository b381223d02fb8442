"""Benchmark: finllm's torch evaluator vs a straightforward pandas groupby-rolling implementation of the
same Alpha158-style expressions, on the full shipped US panel, in one run.

    python bench/bench_eval.py                      # full US panel (~5400 days x 504 stocks)
    python bench/bench_eval.py --max-tickers 100    # quicker
    python bench/bench_eval.py --threads 1          # one torch thread (fair on a busy shared CPU)

Each engine runs in its own subprocess (so peak memory is per engine): the pandas baseline
(tests/factors/pandas_ref.py: ``groupby('ticker').rolling(w)`` builtins, per-ticker rolling corr,
``groupby('date').rank``; no Python callbacks, which would only make it slower), finllm with the cache
disabled, finllm cold (a fresh evaluator; subtrees shared *within* the pass are cached) and finllm warm
(a second pass over the same expressions). Outputs are cross-checked (count and mean of finite values
per expression) so the engines are known to compute the same thing. Prints per-expression times and
ratios; peak RSS is reported per engine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EXPRS = {  # Alpha158-style families: k-bar, momentum/reversal, moving averages, volatility, ranges,
    # volume-price correlation, volume, up/down sums, cross-sectional ranks
    "KMID": "Div(Sub($close, $open), $open)",
    "KLEN": "Div(Sub($high, $low), $open)",
    "KSFT": "Div(Sub(Mul($close, 2), Add($high, $low)), $open)",
    "VWAP0": "Div($vwap, $close)",
    "ROC5": "Div(Ref($close, 5), $close)",
    "ROC20": "Div(Ref($close, 20), $close)",
    "ROC60": "Div(Ref($close, 60), $close)",
    "MA10": "Div(Mean($close, 10), $close)",
    "MA30": "Div(Mean($close, 30), $close)",
    "MA60": "Div(Mean($close, 60), $close)",
    "STD20": "Div(Std($close, 20), $close)",
    "STD60": "Div(Std($close, 60), $close)",
    "MAX20": "Div(Max($high, 20), $close)",
    "MIN20": "Div(Min($low, 20), $close)",
    "RSV20": "Div(Sub($close, Min($low, 20)), Add(Sub(Max($high, 20), Min($low, 20)), 1e-12))",
    "RANK20": "Rank($close, 20)",
    "MED20": "Div(Med($close, 20), $close)",
    "SKEW20": "Skew(Div($close, Ref($close, 1)), 20)",
    "CORR20": "Corr($close, Log(Add($volume, 1)), 20)",
    "CORD20": "Corr(Div($close, Ref($close, 1)), Log(Add(Div($volume, Ref($volume, 1)), 1)), 20)",
    "VMA20": "Div(Mean($volume, 20), Add($volume, 1e-12))",
    "VSTD20": "Div(Std($volume, 20), Add($volume, 1e-12))",
    "WVMA20": "Div(Std(Mul(Abs(Sub(Div($close, Ref($close, 1)), 1)), $volume), 20), "
              "Add(Mean(Mul(Abs(Sub(Div($close, Ref($close, 1)), 1)), $volume), 20), 1e-12))",
    "SUMP20": "Div(Sum(Greater(Sub($close, Ref($close, 1)), 0), 20), Add(Sum(Abs(Sub($close, Ref($close, 1))), 20), 1e-12))",
    "CSMOM20": "CSRank(Div($close, Ref($close, 20)))",
    "CSVOLZ": "CSZScore(Log(Add(Mean($volume, 5), 1)))",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _stats(arr) -> tuple[int, float]:
    import numpy as np

    a = np.asarray(arr, dtype=np.float64)
    fin = np.isfinite(a)
    return int(fin.sum()), float(a[fin].mean()) if fin.any() else math.nan


def run_engine(engine: str, data: str, max_tickers: int | None, threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from factors.evaluate import Evaluator
    from factors.expr import parse
    from factors.panel import load_panel

    t0 = time.perf_counter()
    panel = load_panel(data, max_tickers=max_tickers)
    out: dict = {"engine": engine, "load_s": time.perf_counter() - t0, "days": len(panel.dates),
                 "stocks": len(panel.tickers), "threads": torch.get_num_threads()}
    exprs = {k: parse(v) for k, v in EXPRS.items()}
    if engine == "pandas":
        from tests.factors import pandas_ref as pr

        df, valid, uni = pr.panel_frame(panel)
        out["rss_base_mb"] = _rss_mb()
        times, stats = {}, {}
        for k, e in exprs.items():
            t = time.perf_counter()
            s = pr.evaluate(e, df, valid, uni)
            times[k] = time.perf_counter() - t
            stats[k] = _stats(s.to_numpy())
        out.update(times=times, stats=stats)
    else:
        out["rss_base_mb"] = _rss_mb()
        ev = Evaluator(panel, cache_bytes=0 if engine == "finllm_nocache" else 1 << 30)
        passes = 1 if engine == "finllm_nocache" else 2
        for p in range(passes):
            times, stats = {}, {}
            for k, e in exprs.items():
                t = time.perf_counter()
                y = ev.evaluate(e)
                times[k] = time.perf_counter() - t
                stats[k] = _stats(y.numpy())
            out["times" if p == 0 else "warm_times"] = times
            out["stats"] = stats
        out["cache"] = ev.cache_info()
    out["rss_peak_mb"] = _rss_mb()
    return out


def _child(engine: str, args) -> dict:
    cmd = [sys.executable, __file__, "--engine", engine, "--data", args.data]
    if args.max_tickers:
        cmd += ["--max-tickers", str(args.max_tickers)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"{engine} run failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO / "data/market/us_sp500_daily.parquet"))
    ap.add_argument("--max-tickers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    ap.add_argument("--engine", choices=["pandas", "finllm", "finllm_nocache"], default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default=None, help="Also write the raw results here.")
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.data, args.max_tickers, args.threads)))
        return
    res = {e: _child(e, args) for e in ["finllm", "finllm_nocache", "pandas"]}
    fl, nc, pd_ = res["finllm"], res["finllm_nocache"], res["pandas"]
    print(f"panel: {fl['days']} days x {fl['stocks']} stocks, {len(EXPRS)} expressions, "
          f"torch threads={fl['threads']}, cpus={os.cpu_count()}")
    hdr = f"{'expr':8s} {'pandas s':>9s} {'nocache s':>10s} {'cold s':>8s} {'warm s':>8s} {'x nocache':>9s} " \
          f"{'x cold':>8s} {'x warm':>9s}  check"
    print(hdr)
    print("-" * len(hdr))
    for k in EXPRS:
        p, n, c, w = pd_["times"][k], nc["times"][k], fl["times"][k], fl["warm_times"][k]
        (cnt_p, m_p), (cnt_f, m_f) = pd_["stats"][k], fl["stats"][k]
        ok = cnt_p == cnt_f and (math.isclose(m_p, m_f, rel_tol=1e-3, abs_tol=1e-6) or (m_p != m_p and m_f != m_f))
        print(f"{k:8s} {p:9.3f} {n:10.4f} {c:8.4f} {w:8.5f} {p / n:9.1f} {p / c:8.1f} {p / w:9.0f}  "
              f"{'ok' if ok else f'MISMATCH n={cnt_p}/{cnt_f} mean={m_p:.6g}/{m_f:.6g}'}")
    tp, tn, tc, tw = (sum(r.values()) for r in (pd_["times"], nc["times"], fl["times"], fl["warm_times"]))
    print("-" * len(hdr))
    print(f"{'TOTAL':8s} {tp:9.2f} {tn:10.3f} {tc:8.3f} {tw:8.4f} {tp / tn:9.1f} {tp / tc:8.1f} {tp / tw:9.0f}")
    print(f"peak RSS MB (after data load -> peak): pandas {pd_['rss_base_mb']:.0f} -> {pd_['rss_peak_mb']:.0f}; "
          f"finllm {fl['rss_base_mb']:.0f} -> {fl['rss_peak_mb']:.0f} (cache {fl['cache']['bytes'] / 2**20:.0f} MB, "
          f"{fl['cache']['entries']} entries); finllm no-cache {nc['rss_base_mb']:.0f} -> {nc['rss_peak_mb']:.0f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
