"""Benchmark: factors.panel.load_panel (polars) vs a straightforward pandas implementation.

Both do the same work on the same file, side by side in one process: read parquet, check required
columns / duplicate (date, ticker) / bad prices / high < low, widen contradicting high/low, derive
vwap, pivot to a dense (days x stocks x fields) float32 array with a validity mask, and count NaN runs
inside ticker lives. The results are checked equal before any timing is printed.

    python bench/bench_panel.py [--path data/market/us_sp500_daily.parquet] [--repeats 3]

Prints median seconds per implementation, the pandas/polars ratio, and peak memory two ways: the RSS
growth sampled from /proc every 2 ms during the interleaved runs (inflated by memory that allocators
keep from earlier runs), and the peak RSS growth of one load in a fresh subprocess per implementation
(the cleaner figure; polars allocates outside Python, so tracemalloc would miss it).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
PRICES = ["open", "high", "low", "close"]
FIELDS = ["open", "high", "low", "close", "volume", "vwap"]


def pandas_load(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The pandas way: read, validate with boolean masks, unstack to wide, stack fields."""
    df = pd.read_parquet(path)
    missing = [c for c in ["date", "ticker", *PRICES, "volume"] if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    df["date"] = pd.to_datetime(df["date"])
    if df.duplicated(["date", "ticker"]).any():
        raise ValueError("duplicate (date, ticker)")
    px = df[PRICES]
    bad = px.isna().any(axis=1) | ~np.isfinite(px).all(axis=1) | (px <= 0).any(axis=1) | (df["high"] < df["low"])
    valid = ~bad
    counts = {"invalid": int(bad.sum()), "zero_volume": int(((df["volume"] == 0) & valid).sum())}
    hi_oc = df[["open", "close"]].max(axis=1)
    lo_oc = df[["open", "close"]].min(axis=1)
    counts["range_contradiction"] = int((valid & ((df["high"] < hi_oc) | (df["low"] > lo_oc))).sum())
    df["high"] = np.where(valid, np.maximum(df["high"], hi_oc), df["high"])
    df["low"] = np.where(valid, np.minimum(df["low"], lo_oc), df["low"])
    df.loc[df["volume"] < 0, "volume"] = np.nan
    if "vwap" not in df.columns:
        hlc = df[["high", "low", "close"]].astype(np.float64)
        df["vwap"] = ((hlc["high"] + hlc["low"] + hlc["close"]) / 3).astype(np.float32)
    extras = [c for c in df.columns if c not in ("date", "ticker", *FIELDS, "in_universe")
              and pd.api.types.is_numeric_dtype(df[c])]
    fields = FIELDS + extras
    df.loc[bad, fields] = np.nan
    df["valid"] = valid
    wide = df.set_index(["date", "ticker"])[fields + ["valid"]].unstack("ticker").sort_index()
    values = np.stack([wide[f].to_numpy(dtype=np.float32) for f in fields], axis=-1)
    mask = wide["valid"].fillna(False).to_numpy(dtype=bool)
    v = pd.DataFrame(mask)
    life = v.cummax() & v[::-1].cummax()[::-1]
    counts["nan_runs"] = int((life & ~v).to_numpy().sum())
    return values, mask, counts


def polars_load(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    from factors.panel import load_panel

    p = load_panel(path)
    r = p.report
    counts = {"invalid": r.rows_invalid, "zero_volume": r.count("zero_volume"),
              "range_contradiction": r.count("range_contradiction"), "nan_runs": r.count("nan_runs")}
    return p.values.numpy(), p.valid.numpy(), counts


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn, path: Path) -> tuple[float, float, tuple]:
    """(seconds, peak RSS growth in MiB, result) of fn(path)."""
    gc.collect()
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn(path)
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    peak[0] = max(peak[0], _rss())
    return dt, (peak[0] - base) / 2**20, out


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def isolated_peak_mib(impl: str, path: Path) -> float:
    """Peak RSS growth (MiB) of one load in a fresh interpreter."""
    out = subprocess.run([sys.executable, __file__, "--path", str(path), "--peak-of", impl],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", type=Path, default=REPO / "data" / "market" / "us_sp500_daily.parquet")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-of", choices=["polars", "pandas"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    import factors.panel  # noqa: F401 - import cost (torch, polars) is not part of a load

    if args.peak_of:  # child process of isolated_peak_mib
        before = _status_kib("VmRSS")
        (polars_load if args.peak_of == "polars" else pandas_load)(args.path)
        print((_status_kib("VmHWM") - before) / 1024)  # ru_maxrss would carry the parent's peak over exec
        return

    times: dict[str, list[float]] = {"polars": [], "pandas": []}
    mems: dict[str, list[float]] = {"polars": [], "pandas": []}
    results = {}
    for _ in range(args.repeats):  # alternate so both see the same cache / machine state
        for name, fn in (("polars", polars_load), ("pandas", pandas_load)):
            dt, mem, out = measure(fn, args.path)
            times[name].append(dt)
            mems[name].append(mem)
            results[name] = out
            del out
    (pv, pm, pc), (qv, qm, qc) = results["polars"], results["pandas"]
    assert pv.shape == qv.shape, (pv.shape, qv.shape)
    assert np.array_equal(pm, qm), "validity masks differ"
    assert np.array_equal(np.nan_to_num(pv, nan=-1.0), np.nan_to_num(qv, nan=-1.0)), "values differ"
    assert pc == qc, (pc, qc)

    print(f"file: {args.path} -> tensor {pv.shape} float32; checks {pc}")
    iso = {name: isolated_peak_mib(name, args.path) for name in ("polars", "pandas")}
    print(f"{'impl':8} {'median s':>9} {'min s':>7} {'peak +MiB (interleaved)':>24} {'peak +MiB (fresh process)':>26}")
    for name in ("polars", "pandas"):
        print(f"{name:8} {statistics.median(times[name]):9.2f} {min(times[name]):7.2f} "
              f"{max(mems[name]):24.0f} {iso[name]:26.0f}")
    ratio = statistics.median(times["pandas"]) / statistics.median(times["polars"])
    best = min(times["pandas"]) / min(times["polars"])
    mem_ratio = iso["pandas"] / max(iso["polars"], 1.0)
    print(f"speed-up pandas/polars: {ratio:.1f}x (median of {args.repeats}), {best:.1f}x (best of each); "
          f"peak memory ratio pandas/polars (fresh process): {mem_ratio:.2f}x")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(timings on a loaded machine are noisy; the ratio compares runs interleaved in one process)")


if __name__ == "__main__":
    main()
