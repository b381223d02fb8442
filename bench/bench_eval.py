"""Benchmark: finllm's evaluator (numba kernels behind torch tensors) vs a straightforward pandas
groupby-rolling implementation of the same Alpha158-style expressions, on the full shipped US panel, in
one run.

    python bench/bench_eval.py                      # full US panel (~5400 days x 504 stocks)
    python bench/bench_eval.py --max-tickers 100    # quicker
    python bench/bench_eval.py --threads 1          # one thread (fair on a busy shared CPU)
    python bench/bench_eval.py --threads 2          # kernels split stocks (days) over two threads

Each engine runs in its own subprocess (so peak memory is per engine): the pandas baseline
(tests/factors/pandas_ref.py: ``groupby('ticker').rolling(w)`` builtins, per-ticker rolling corr,
``groupby('date').rank``; no Python callbacks, which would only make it slower), finllm with the cache
disabled, finllm cold (a fresh evaluator; window and cross-sectional results shared *within* the pass
are cached, element-wise ones are recomputed, see factors/evaluate.py) and finllm warm (a second pass
over the same expressions). Outputs are cross-checked (count and mean of finite values
per expression) so the engines are known to compute the same thing. Prints per-expression times and
ratios; peak RSS is reported per engine.

The numba kernels are compiled once per install (cached on disk by numba) and loaded on first use in a
process: each finllm engine first runs every operator on a tiny panel, outside the timings, and the
time that took is printed separately ("JIT"). Times are wall-clock; the process CPU time of each engine's
timed loop is printed too (on a shared, busy machine it is the steadier figure).
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
    jit_s = None
    if engine != "pandas":
        from factors.ops import warm_up

        t0 = time.perf_counter()
        warm_up()
        jit_s = time.perf_counter() - t0

    from factors.evaluate import Evaluator
    from factors.expr import parse
    from factors.panel import load_panel

    t0 = time.perf_counter()
    panel = load_panel(data, max_tickers=max_tickers)
    out: dict = {"engine": engine, "load_s": time.perf_counter() - t0, "days": len(panel.dates),
                 "stocks": len(panel.tickers), "threads": torch.get_num_threads(), "jit_s": jit_s}
    exprs = {k: parse(v) for k, v in EXPRS.items()}
    if engine == "pandas":
        from tests.factors import pandas_ref as pr

        df, valid, uni = pr.panel_frame(panel)
        out["rss_base_mb"] = _rss_mb()
        times, stats, cpu = {}, {}, 0.0
        for k, e in exprs.items():
            t, c = time.perf_counter(), time.process_time()
            s = pr.evaluate(e, df, valid, uni)
            times[k] = time.perf_counter() - t
            cpu += time.process_time() - c
            stats[k] = _stats(s.to_numpy())
        out.update(times=times, stats=stats, cpu_s=cpu)
    else:
        out["rss_base_mb"] = _rss_mb()
        if engine == "finllm_prefaulted":  # diagnosis only: first-touch page faults taken out of the pass
            from factors import kernels

            d, s = len(panel.dates), len(panel.tickers)
            kernels.memory._FREE_MAX = 4 << 30
            bufs = [kernels.empty((d, s)) for _ in range(80)]
            for b in bufs:
                b.fill(0.0)
            del bufs
        ev = Evaluator(panel, cache_bytes=0 if engine == "finllm_nocache" else 1 << 30)
        passes = 2 if engine == "finllm" else 1
        for p in range(passes):
            times, stats, cpu_ms = {}, {}, {}
            for k, e in exprs.items():
                t, c = time.perf_counter(), time.process_time()
                y = ev.evaluate(e)
                times[k] = time.perf_counter() - t
                cpu_ms[k] = (time.process_time() - c) * 1e3
                stats[k] = _stats(y.numpy())
            out["times" if p == 0 else "warm_times"] = times
            out["cpu_ms" if p == 0 else "warm_cpu_ms"] = cpu_ms
            out["cpu_s" if p == 0 else "warm_cpu_s"] = sum(cpu_ms.values()) / 1e3
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
    ap.add_argument("--threads", type=int, default=None,
                    help="Threads for torch and the kernels (default: torch's default).")
    ap.add_argument("--split-faults", action="store_true",
                    help="Also run finllm cold with its output memory faulted in beforehand (diagnosis: "
                         "shows how much of the cold pass is first-touch page faults of fresh memory).")
    ap.add_argument("--engine", choices=["pandas", "finllm", "finllm_nocache", "finllm_prefaulted"], default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default=None, help="Also write the raw results here.")
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.data, args.max_tickers, args.threads)))
        return
    res = {e: _child(e, args) for e in ["finllm", "finllm_nocache", "pandas"]}
    fl, nc, pd_ = res["finllm"], res["finllm_nocache"], res["pandas"]
    load = os.getloadavg()
    print(f"panel: {fl['days']} days x {fl['stocks']} stocks, {len(EXPRS)} expressions, "
          f"threads={fl['threads']}, cpus={os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"JIT (load the compiled kernels from numba's disk cache, or compile them after an install; once per "
          f"process, not timed below): {fl['jit_s']:.2f} s")
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
    print(f"{'CPU s':8s} {pd_['cpu_s']:9.2f} {nc['cpu_s']:10.3f} {fl['cpu_s']:8.3f} {fl['warm_cpu_s']:8.4f} "
          f"{pd_['cpu_s'] / nc['cpu_s']:9.1f} {pd_['cpu_s'] / fl['cpu_s']:8.1f} {pd_['cpu_s'] / fl['warm_cpu_s']:9.0f}"
          f"  (process CPU time of the timed loops)")
    print(f"peak RSS MB (after data load -> peak): pandas {pd_['rss_base_mb']:.0f} -> {pd_['rss_peak_mb']:.0f}; "
          f"finllm {fl['rss_base_mb']:.0f} -> {fl['rss_peak_mb']:.0f} (cache {fl['cache']['bytes'] / 2**20:.0f} MB, "
          f"{fl['cache']['entries']} entries); finllm no-cache {nc['rss_base_mb']:.0f} -> {nc['rss_peak_mb']:.0f}")
    if args.split_faults:
        pf = _child("finllm_prefaulted", args)
        res["finllm_prefaulted"] = pf
        print("\ndiagnosis: finllm cold pass, CPU ms per expression, with fresh memory (as above) and with the "
              "output memory already faulted in (80 recycled buffers prepared before the pass)")
        print(f"{'expr':8s} {'cold ms':>8s} {'prefaulted ms':>14s} {'faults ms':>10s}")
        for k in EXPRS:
            c, q = fl["cpu_ms"][k], pf["cpu_ms"][k]
            print(f"{k:8s} {c:8.1f} {q:14.1f} {c - q:10.1f}")
        tc, tq = sum(fl["cpu_ms"].values()), sum(pf["cpu_ms"].values())
        print(f"{'TOTAL':8s} {tc:8.1f} {tq:14.1f} {tc - tq:10.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
