"""Hostile-input fixtures: small real files (slices of the shipped data) to break on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
US = REPO / "data/market/us_sp500_daily.parquet"
AMAZON = REPO / "data/fraud/amazon_upu.mat"


@pytest.fixture(scope="session")
def us_small() -> pl.DataFrame:
    """Real US rows: 2019-01 .. 2019-03 for the 12 alphabetically first tickers."""
    lf = pl.scan_parquet(US).filter((pl.col("date").dt.year() == 2019) & (pl.col("date").dt.month() <= 3))
    first = lf.select(pl.col("ticker").unique().sort().head(12)).collect()["ticker"]
    return lf.filter(pl.col("ticker").is_in(first.implode())).collect()


@pytest.fixture(scope="session")
def graph_arrays() -> dict[str, np.ndarray]:
    """A 300-node slice of the real Amazon graph (users 2400..2699, the edges among them) as .npz arrays."""
    import scipy.io as sio
    import scipy.sparse as sp

    m = sio.loadmat(AMAZON)
    lo, hi = 2400, 2700
    a = sp.coo_matrix(sp.csr_matrix(m["Network"])[lo:hi, lo:hi])
    keep = a.row < a.col
    x = np.asarray(m["Attributes"].toarray() if sp.issparse(m["Attributes"]) else m["Attributes"])[lo:hi]
    y = np.asarray(m["Label"]).reshape(-1)[lo:hi]
    return {"node_features": x.astype(np.float32), "node_labels": y.astype(np.int64),
            "edges": np.stack([a.row[keep], a.col[keep]], 1).astype(np.int64)}


@pytest.fixture
def write_npz(tmp_path: Path, graph_arrays):
    """write_npz(name, **overrides) -> path of an .npz of the real slice with keys replaced/added
    (a value of None drops the key)."""
    def make(name: str, **over) -> Path:
        arrays = {**graph_arrays, **over}
        path = tmp_path / f"{name}.npz"
        np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
        return path
    return make
