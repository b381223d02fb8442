"""Fuzz bench: >= 10,000 mutated input files through the loaders, plus resource bombs, with counts and
peak memory.

    python bench/bench_fuzz.py --files 10000 --workers 2

1. Mutated files: the seeds of tests/hostile/mutators.py (slices of the shipped Amazon graph as .npz /
   .mat / CSV, the Bitcoin trust CSV, the US market as parquet / CSV), each case one byte-wise or
   structural mutation, loaded as `finllm data` loads it. Outcomes: ``ok`` (loaded, every invariant
   holds), ``refused`` (one DataError line), ``wrong`` (loaded but an invariant broken: a silent wrong
   answer), ``crash`` (any other exception, or a multi-line message: a traceback for the user). Worker
   processes report their peak RSS; the largest is an upper bound of the peak of any single input.
2. Bombs and big real files, each in a fresh process whose peak RSS is measured alone (and the RSS
   after the imports, before the load; the load alone is timed): a 100 KB .npz
   with edge_type 10**12, an .npz declaring a 10**6 x 10**6 array, a 1.6 KB .npz whose zip member
   inflates to 2 GB of zeros, and the shipped 48 MB US parquet and 0.7 MB Amazon .mat.

Prints one table and the JSON summary (``--json``); exit 1 when any crash or wrong answer occurred.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_SEEDS: dict[str, Path] = {}
_WORK: Path | None = None


def _init(seed_dir: str) -> None:
    global _WORK
    from tests.hostile import mutators

    _SEEDS.update({name: Path(seed_dir) / ("graph_csv" if name == "graph_csv" else name)
                   for name in mutators.SEED_NAMES})
    _WORK = Path(tempfile.mkdtemp(prefix="fuzz_"))


def _case(args: tuple[str, int]) -> tuple[str, str, str, int, float]:
    """(seed, outcome, detail, worker peak RSS in KiB, seconds) of one mutated file."""
    import numpy as np

    from tests.hostile.mutators import classify, make_case

    seed, key = args
    t0 = time.perf_counter()
    path = make_case(_SEEDS, seed, np.random.default_rng(key), _WORK)
    outcome, detail = classify(path, seed)
    return seed, outcome, detail[:160], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0


# ---- bombs -------------------------------------------------------------------------------------
def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def make_bombs(folder: Path) -> dict[str, Path]:
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    n, e = 2000, 6000
    base = {"node_features": rng.random((n, 4)).astype(np.float32), "node_labels": rng.integers(0, 2, n),
            "edges": rng.integers(0, n, (e, 2))}
    out = {}
    et = np.zeros(e, np.int64)
    et[5] = 10**12
    out["edge_type_1e12.npz"] = folder / "edge_type_1e12.npz"
    np.savez_compressed(out["edge_type_1e12.npz"], **base, edge_type=et)

    def members(z: zipfile.ZipFile, skip: str) -> None:
        for k, v in base.items():
            if k != skip:
                b = io.BytesIO()
                np.save(b, v)
                z.writestr(f"{k}.npy", b.getvalue())

    out["declared_1e12_cells.npz"] = folder / "declared_1e12_cells.npz"
    with zipfile.ZipFile(out["declared_1e12_cells.npz"], "w") as z:
        z.writestr("node_features.npy", _npy_header((10**6, 10**6), "<f8") + b"\0" * 64)
        members(z, "node_features")
    out["zip_bomb_2GB.npz"] = folder / "zip_bomb_2GB.npz"  # 2 GiB of zeros, streamed (never in memory here)
    rows = 2**31 // (8 * 4)
    with zipfile.ZipFile(out["zip_bomb_2GB.npz"], "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("node_features.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header((rows, 4), "<f8"))
            chunk = bytes(2**24)
            for _ in range(2**31 // len(chunk)):
                fh.write(chunk)
        members(z, "node_features")
    out["us_sp500_daily.parquet (48 MB, real)"] = REPO / "data/market/us_sp500_daily.parquet"
    out["amazon_upu.mat (real)"] = REPO / "data/fraud/amazon_upu.mat"
    return out


_ONE = """
import resource, sys, time
sys.path.insert(0, {repo!r})
import psutil, factors.panel, fraud.datasets  # imports first: the timing and the RSS base are the load's own
from tests.hostile.mutators import classify
base = psutil.Process().memory_info().rss // 1024
t0 = time.perf_counter()
outcome, detail = classify(__import__("pathlib").Path({path!r}), {seed!r})
print(outcome, round(time.perf_counter() - t0, 4), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, base,
      detail[:150], sep="\\t")
"""


def run_alone(path: Path, seed: str) -> dict:
    """Load ``path`` in a fresh interpreter; its peak RSS is this input's alone (plus the imports)."""
    r = subprocess.run([sys.executable, "-c", _ONE.format(repo=str(REPO), path=str(path), seed=seed)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return {"outcome": "crash", "detail": (r.stderr.strip().splitlines() or ["?"])[-1][:150], "peak_mb": None}
    outcome, secs, rss, base, detail = r.stdout.rstrip("\n").split("\t", 4)
    return {"outcome": outcome, "seconds": float(secs), "peak_mb": round(int(rss) / 1024, 1),
            "after_imports_mb": round(int(base) / 1024, 1), "detail": detail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--start", type=int, default=0, help="first case key (keys are start..start+files-1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tests.hostile.mutators import SEED_NAMES, build_seeds

    tmp = Path(tempfile.mkdtemp(prefix="bench_fuzz_"))
    build_seeds(tmp / "seeds")
    t0 = time.perf_counter()
    counts: collections.Counter = collections.Counter()
    bad: dict[tuple[str, str, str], int] = collections.Counter()
    max_rss = 0
    jobs = [(SEED_NAMES[k % len(SEED_NAMES)], k) for k in range(args.start, args.start + args.files)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init, initargs=(str(tmp / "seeds"),), maxtasksperchild=2000) as pool:
        for i, (seed, outcome, detail, rss, _secs) in enumerate(pool.imap_unordered(_case, jobs, chunksize=20)):
            counts[(seed, outcome)] += 1
            max_rss = max(max_rss, rss)
            if outcome in ("crash", "wrong"):
                bad[(seed, outcome, detail)] += 1
            if (i + 1) % 1000 == 0:
                print(f"{i + 1} files, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - t0
    bombs = {name: run_alone(path, "market" if name.endswith("parquet (48 MB, real)") else "graph")
             for name, path in make_bombs(tmp).items()}
    summary = {
        "files": args.files, "workers": args.workers, "wall_s": round(wall, 1),
        "files_per_s": round(args.files / wall, 1),
        "outcomes": {o: sum(v for (s, oo), v in counts.items() if oo == o) for o in ("ok", "refused", "wrong", "crash")},
        "by_seed": {s: {o: counts[(s, o)] for o in ("ok", "refused", "wrong", "crash")} for s in SEED_NAMES},
        "failures": [{"seed": s, "outcome": o, "detail": d, "count": c} for (s, o, d), c in bad.items()],
        "max_worker_rss_mb": round(max_rss / 1024, 1),
        "bombs": bombs,
        "host": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (shared with parallel work)",
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.files} mutated files in {wall:.0f} s ({summary['files_per_s']} files/s, {args.workers} workers)")
        print(f"{'seed':<16}{'ok':>8}{'refused':>9}{'wrong':>7}{'crash':>7}")
        for s, c in summary["by_seed"].items():
            print(f"{s:<16}{c['ok']:>8}{c['refused']:>9}{c['wrong']:>7}{c['crash']:>7}")
        print(f"total: {summary['outcomes']}; peak RSS of any worker: {summary['max_worker_rss_mb']} MB")
        for f in summary["failures"]:
            print(f"  FAIL {f['seed']} {f['outcome']} x{f['count']}: {f['detail']}")
        for name, b in bombs.items():
            print(f"  {name:<38} {b['outcome']:<8} peak {b['peak_mb']} MB (after imports "
                  f"{b.get('after_imports_mb')} MB), load {b.get('seconds', '')} s  {b['detail'][:80]}")
    failed = summary["outcomes"]["crash"] + summary["outcomes"]["wrong"]
    sys.exit(1 if failed or any(b["outcome"] == "crash" for b in bombs.values()) else 0)


if __name__ == "__main__":
    main()
