"""Small synthetic run records for report/summary tests (real SQLite store, real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finllm.store import open_store
from tests.conftest import DATA

US = DATA / "market" / "us_sp500_daily.parquet"
TICKERS = ["AAPL", "MSFT", "XOM", "GE", "F", "BAC", "C", "AIG", "JPM", "WFC", "PFE", "MRK", "KO", "PEP", "WMT",
           "HD", "INTC", "CSCO", "ORCL", "IBM", "T", "VZ", "CVX", "COP", "JNJ", "PG", "MCD", "DIS", "BA", "CAT"]
SPLITS = {"train": "2011-01-01:2012-12-31", "valid": "2013-01-01:2013-12-31", "test": "2014-01-01:2014-12-31"}
POOL = {"Mul(Delta($close, 5), -1)": 0.5, "Div($volume, Mean($volume, 20))": -0.2,
        "Corr($close, $volume, 10)": -0.3, "Std(Div(Delta($close, 1), Ref($close, 1)), 20)": 0.1}


@pytest.fixture(scope="session")
def market_file(tmp_path_factory) -> Path:
    """A real slice of the shipped S&P 500 file: 30 large names, 2011-2014 (about 30k rows)."""
    import polars as pl

    out = tmp_path_factory.mktemp("market") / "sp500_slice.parquet"
    (pl.scan_parquet(US)
     .filter(pl.col("ticker").is_in(TICKERS) & (pl.col("date") >= pl.date(2011, 1, 1))
             & (pl.col("date") <= pl.date(2014, 12, 31)))
     .collect().write_parquet(out))
    return out


@pytest.fixture(scope="session")
def market_panel(market_file):
    from factors.panel import load_panel

    return load_panel(market_file)


@pytest.fixture
def factor_run(store, market_file, market_panel) -> str:
    """A finished factor_mine run as factors.mine records it: 4 hand-written members scored by the real
    SplitScorer on the real slice, plus a 20-day momentum baseline, stored with the pool."""
    from factors.expr import parse
    from factors.mine import MineConfig, SplitScorer, score_pool
    from factors.splits import parse_splits

    cfg = MineConfig(data=str(market_file), train=SPLITS["train"], valid=SPLITS["valid"], test=SPLITS["test"],
                     method="gp", cost_bps=10.0)
    splits = parse_splits(cfg.train, cfg.valid, cfg.test)
    members = [{"tokens": list(parse(f).tokens), "formula": parse(f).infix, "weight": w} for f, w in POOL.items()]
    sc = SplitScorer(market_panel, splits, cfg.horizon, cfg.cost_bps, cfg.warmup_days)
    res = score_pool(members, market_panel, splits, cfg, scorer=sc)
    base = sc.report(sc.ev.evaluate("Div(Delta($close, 20), Ref($close, 20))"))
    rid = store.start_run("factor_mine", cfg.run_config(), name="test pool")
    store.save_pool(rid, [{k: m[k] for k in ("tokens", "formula", "weight", "metrics")} for m in res["pool"]],
                    source="handcrafted")
    store.finish_run(rid, metrics={"pool": res["metrics"], "baselines": {"momentum_20d": base},
                                   "mining": {"episodes": 0}})
    return rid


@pytest.fixture
def store(sqlite_url: str):
    s = open_store(sqlite_url)
    yield s
    s.dispose()


@pytest.fixture
def fraud_run(store, tmp_path: Path) -> str:
    """A finished fraud_train run with a predictions .npz, a model and 12 alerts (synthetic scores)."""
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.1).astype(np.int64)
    y[:50] = -1  # unlabelled nodes stay out of the curves
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.5 * (y == 1) - 1.5)))
    base = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.0 * (y == 1) - 1.5)))
    split = rng.choice([0, 1, 2], n, p=[0.4, 0.2, 0.4]).astype(np.int8)
    np.savez(tmp_path / "pred.npz", y=y, score=score, split=split, score__xgbgraph=base)
    rid = store.start_run("fraud_train", {"dataset": "amazon_upu.mat", "model": "bwgnn", "seeds": [0, 1, 2]},
                          name="amazon bwgnn")
    store.finish_run(rid, metrics={"test": {"auroc": 0.9123, "auprc": 0.5512, "recall_at_k": 0.61},
                                   "valid": {"auroc": 0.905, "auprc": 0.54},
                                   "baselines": {"xgbgraph": {"test": {"auroc": 0.8311, "auprc": 0.4011}}},
                                   "threshold": 0.4132, "seconds": 12.3},
                     artifacts={"predictions": str(tmp_path / "pred.npz")})
    mid = store.save_fraud_model(run_id=rid, name="bwgnn", dataset="amazon_upu.mat", threshold=0.4132,
                                 path=str(tmp_path / "m.pt"))
    top = np.argsort(-score)[:12]
    store.save_alerts(mid, "2024-01-02", [
        {"node": str(int(i)), "score": float(score[i]), "rank": r + 1, "above_threshold": bool(score[i] > 0.4132),
         "explanation": f"node {int(i)} <script>alert(1)</script> shares reviewers with 3 flagged users"}
        for r, i in enumerate(top)])
    return rid


@pytest.fixture
def fraud_run_seeds(store, tmp_path: Path) -> str:
    """A fraud_train run recorded as ``fraud.artifacts.run_metrics`` writes it: per-seed lists, the kept
    seed, per_seed records; predictions of the kept seed with a baseline's scores (synthetic scores)."""
    rng = np.random.default_rng(1)
    n = 3000
    y = (rng.random(n) < 0.08).astype(np.int64)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.5 * (y == 1) - 2.0)))
    base = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * (y == 1) - 2.0)))
    split = rng.choice([0, 1, 2], n, p=[0.4, 0.2, 0.4]).astype(np.int8)
    np.savez(tmp_path / "pred_seeds.npz", y=y, score=score, split=split, score__xgbgraph=base)
    per_seed = [{"seed": s, "val": {"auroc": a - 0.01, "auprc": p - 0.02, "rec@k": 0.5 + s / 10, "macro_f1": 0.7},
                 "test": {"auroc": a, "auprc": p, "rec@k": 0.55 + s / 10, "macro_f1": 0.72}, "train_time_s": 3.0}
                for s, (a, p) in enumerate(((0.9317, 0.7712), (0.9671, 0.8463)))]
    metrics = {"threshold": 0.6123, "kept_seed": 1,
               "test": {"auroc": [m["test"]["auroc"] for m in per_seed], "auprc": [m["test"]["auprc"] for m in per_seed]},
               "valid": {"auroc": [m["val"]["auroc"] for m in per_seed], "auprc": [m["val"]["auprc"] for m in per_seed]},
               "per_seed": per_seed, "baselines": {"xgbgraph": {"test": {"auroc": 0.8012, "auprc": 0.4421}}}}
    rid = store.start_run("fraud_train", {"dataset": "amazon_upu.mat", "model": "hsign", "seeds": [0, 1]},
                          name="amazon hsign 2 seeds")
    store.finish_run(rid, metrics=metrics, artifacts={"predictions": str(tmp_path / "pred_seeds.npz")})
    mid = store.save_fraud_model(run_id=rid, name="hsign", dataset="amazon_upu.mat", threshold=0.6123,
                                 path=str(tmp_path / "m2.pt"))
    top = np.argsort(-score)[:5]
    store.save_alerts(mid, "2024-02-01", [{"node": str(int(i)), "score": float(score[i]), "rank": r + 1,
                                           "above_threshold": bool(score[i] > 0.6123), "explanation": ""}
                                          for r, i in enumerate(top)])
    return rid
