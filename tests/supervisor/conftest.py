"""Shared fixtures for the supervisor tests: a real graph (Amazon U-P-U, 10k nodes) and its semi split."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import DATA


@pytest.fixture(scope="session")
def amazon():
    from fraud.datasets import load_graph

    return load_graph(DATA / "fraud" / "amazon_upu.mat")


@pytest.fixture(scope="session")
def amazon_split(amazon):
    from fraud.splits import make_split

    return make_split(amazon, "semi", 0)


@pytest.fixture(scope="session")
def fake_scores(amazon):
    """Scores that are not a model's: fixed random numbers (prompt tests need any (N,) scores)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(amazon.num_nodes, generator=g)


@pytest.fixture(scope="session")
def bitcoin():
    from fraud.datasets import load_graph

    return load_graph(DATA / "fraud" / "soc-sign-bitcoinotc.csv")


@pytest.fixture(scope="session")
def bitcoin_split(bitcoin):
    from fraud.splits import make_split

    return make_split(bitcoin, "semi", 0)


@pytest.fixture(scope="session")
def round1(bitcoin, bitcoin_split):
    """A real SAGE detector, trained for a few epochs only (the tests check plumbing, not accuracy)."""
    from fraud.train import train_model

    return train_model(bitcoin, "sage", bitcoin_split, 0, epochs=3, patience=3)
