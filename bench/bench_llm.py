"""Gateway throughput: concurrent vs sequential, and warm cache vs cold, side by side.

    python bench/bench_llm.py                 # embedded SmolLM2-135M server on a free port, N=12
    python bench/bench_llm.py -n 24 --concurrency 4 --json
    FINLLM_LLM_BASE_URL=... python bench/bench_llm.py   # any OpenAI-compatible endpoint

Each variant sends the same N distinct structured requests (max_tokens=48). Baselines: the
sequential run for concurrency, the cold-cache run for the cache. Ratios > 1 mean faster.
Note: llama-cpp-python's server decodes one request at a time, so concurrency can only overlap HTTP,
tokenisation and JSON validation; endpoints with continuous batching (vLLM, OpenAI) gain far more.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finllm.config import load_settings  # noqa: E402
from finllm.llm import Gateway, get_gateway  # noqa: E402
from finllm.store import open_store  # noqa: E402

SUBJECTS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Soylent",
            "Cyberdyne", "Oscorp"]
EVENTS = ["profits jump", "shares slump", "guidance unchanged", "CEO resigns", "wins contract", "misses estimates"]


class Sentiment(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0.0, le=1.0)


def requests(n: int, salt: str) -> list[dict]:
    heads = [f"{SUBJECTS[i % len(SUBJECTS)]} {EVENTS[i % len(EVENTS)]} ({salt}{i})" for i in range(n)]
    return [dict(template="check", variables={"headline": h}, schema=Sentiment, max_tokens=48, max_repairs=0)
            for h in heads]


def timed(gw: Gateway, reqs: list[dict], concurrency: int, use_cache: bool) -> dict:
    reqs = [{**r, "use_cache": use_cache} for r in reqs]
    before = gw.usage()
    t0 = time.perf_counter()
    out = gw.structured_many(reqs, concurrency=concurrency)
    wall = time.perf_counter() - t0
    after = gw.usage()
    return {"wall_s": wall, "req_per_s": len(reqs) / wall, "valid": sum(map(bool, out)), "n": len(reqs),
            "calls": after["calls"] - before["calls"], "cached": after["cached"] - before["cached"]}


def merge(runs: list[dict]) -> dict:
    out = {k: sum(r[k] for r in runs) for k in ("wall_s", "valid", "n", "calls", "cached")}
    out["req_per_s"] = out["n"] / out["wall_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=12, help="requests per variant")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (ABBA) the N requests are split into")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    settings = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        if settings.llm_base_url is None:  # own embedded server on a free port, stopped at exit
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            settings = replace(settings, llm_port=port, home=Path(tmp))
        store = open_store(f"sqlite:///{tmp}/bench.db", settings=settings)
        gw = get_gateway(settings=settings, store=store, budget=None)
        t0 = time.perf_counter()
        warm = gw.structured("check", {"headline": "warm-up"}, Sentiment, max_tokens=48, use_cache=False)
        startup = time.perf_counter() - t0
        # ABBA order over rounds so drifting machine load hits both variants alike
        parts: dict[str, list[dict]] = {"seq": [], "conc": [], "cold": [], "hot": []}
        per = max(1, args.n // args.rounds)
        for r in range(args.rounds):
            order = ["seq", "conc"] if r % 2 == 0 else ["conc", "seq"]
            for v in order:
                parts[v].append(timed(gw, requests(per, f"{v}{r}-"), 1 if v == "seq" else args.concurrency,
                                      use_cache=False))
            parts["cold"].append(timed(gw, requests(per, f"k{r}-"), args.concurrency, use_cache=True))
            parts["hot"].append(timed(gw, requests(per, f"k{r}-"), args.concurrency, use_cache=True))
        seq, conc, cold, hot = (merge(parts[k]) for k in ("seq", "conc", "cold", "hot"))
        store.dispose()

    res = {"endpoint": settings.llm_base_url or "embedded", "model": settings.llm_model, "n": seq["n"],
           "concurrency": args.concurrency, "first_call_s_incl_server_start": round(startup, 2),
           "warmup_ok": bool(warm),
           "sequential": seq, "concurrent": conc, "cache_cold": cold, "cache_warm": hot,
           "ratio_concurrent_vs_sequential": conc["req_per_s"] / seq["req_per_s"],
           "ratio_warm_vs_cold": hot["req_per_s"] / cold["req_per_s"]}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"endpoint={res['endpoint']} model={res['model']} N={seq['n']} per variant, rounds={args.rounds}, concurrency={args.concurrency} "
          f"(first call incl. server start {startup:.1f}s)")
    print(f"{'variant':<22}{'wall s':>9}{'req/s':>9}{'valid':>7}{'calls':>7}{'cached':>8}")
    for name, r in [("sequential (baseline)", seq), ("concurrent", conc), ("cache cold (baseline)", cold),
                    ("cache warm", hot)]:
        print(f"{name:<22}{r['wall_s']:>9.2f}{r['req_per_s']:>9.2f}{r['valid']:>7}{r['calls']:>7}"
              f"{r['cached']:>8}")
    print(f"throughput ratio concurrent/sequential: {res['ratio_concurrent_vs_sequential']:.2f}x")
    print(f"throughput ratio warm-cache/cold-cache: {res['ratio_warm_vs_cold']:.1f}x")


if __name__ == "__main__":
    main()
