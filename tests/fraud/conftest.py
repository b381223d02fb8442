"""Fixtures for the fraud tests: small slices of the real shipped graphs, written through the loaders."""

from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass

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


@dataclass(frozen=True)
class TinyGraph:
    """A 5-node graph with 2 relations to check aggregations by hand: edges src -> dst ``ei`` (2, 6), their
    relation ``et`` and weight ``w`` (edge 2 -> 1 has weight 0: no edge), features ``x`` (5, 2); node 4 has
    no neighbours."""

    ei: torch.Tensor
    et: torch.Tensor
    w: torch.Tensor
    x: torch.Tensor

    def ops(self):
        from fraud.models import GraphOps

        return GraphOps(self.ei, 5, edge_type=self.et, edge_weight=self.w, num_relations=2)

    def in_edges(self, i: int, rel: int | None) -> list[tuple[int, float]]:
        """(source, weight) of node ``i``'s in-edges with weight > 0 (of relation ``rel``; None: all)."""
        return [(int(s), float(wt)) for s, d, t, wt in zip(self.ei[0], self.ei[1], self.et, self.w)
                if int(d) == i and wt > 0 and (rel is None or int(t) == rel)]


@pytest.fixture
def tiny_graph() -> TinyGraph:
    return TinyGraph(ei=torch.tensor([[0, 1, 2, 3, 1, 0], [1, 0, 1, 1, 2, 2]]), et=torch.tensor([0, 0, 1, 1, 0, 1]),
                     w=torch.tensor([1.0, 0.5, 0.0, 1.0, 0.25, 1.0]),
                     x=torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [2.0, 2.0], [7.0, 7.0]]))
