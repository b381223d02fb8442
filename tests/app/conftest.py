"""A small slice of the shipped Amazon graph (users 2200..5199 and the edges among them), as an .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def graph_slice(tmp_path_factory) -> Path:
    from fraud.datasets import load_graph

    ds = load_graph(REPO / "data/fraud/amazon_upu.mat")
    lo, hi = 2200, 5200
    ei = ds.data.edge_index
    keep = (ei[0] >= lo) & (ei[0] < hi) & (ei[1] >= lo) & (ei[1] < hi) & (ei[0] < ei[1])
    path = tmp_path_factory.mktemp("graph") / "amazon_slice.npz"
    np.savez(path, node_features=ds.data.x[lo:hi].numpy(), node_labels=ds.data.y[lo:hi].numpy(),
             edges=(ei[:, keep] - lo).T.numpy())
    return path
