"""Fixtures for the fraud tests: small slices of the real shipped graphs, written through the loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
AMAZON = REPO / "data/fraud/amazon_upu.mat"
BITCOIN = REPO / "data/fraud/soc-sign-bitcoinotc.csv"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One torch thread: the CI box has 2 cores and oversubscription makes sparse ops 5-10x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def amazon():
    from fraud.datasets import load_graph

    return load_graph(AMAZON)


@pytest.fixture(scope="session")
def bitcoin():
    from fraud.datasets import load_graph

    return load_graph(BITCOIN)


@pytest.fixture(scope="session")
def amazon_slice_path(tmp_path_factory, amazon) -> Path:
    """Amazon users 2200..5199 (the file orders frauds late) and the edges among them, as an .npz."""
    lo, hi = 2200, 5200
    ei = amazon.data.edge_index
    keep = (ei[0] >= lo) & (ei[0] < hi) & (ei[1] >= lo) & (ei[1] < hi) & (ei[0] < ei[1])
    path = tmp_path_factory.mktemp("amazon") / "amazon_slice.npz"
    np.savez(path, node_features=amazon.data.x[lo:hi].numpy(), node_labels=amazon.data.y[lo:hi].numpy(),
             edges=(ei[:, keep] - lo).T.numpy())
    return path


@pytest.fixture(scope="session")
def amazon_slice(amazon_slice_path):
    from fraud.datasets import load_graph

    return load_graph(amazon_slice_path)
