"""Explanations: features and neighbours that drive a saved detector's score; the CLI command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import DATA

PATH = DATA / "fraud" / "soc-sign-bitcoinotc.csv"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, bitcoin, round1):
    """The session's small SAGE model on Bitcoin OTC, saved in a fresh store."""
    from finllm.store import open_store
    from fraud.artifacts import load_model, save_model

    home = tmp_path_factory.mktemp("explain_home")
    ds, res = bitcoin, round1
    url = f"sqlite:///{home / 'finllm.db'}"
    store = open_store(url)
    mid = save_model(res, store, dataset=str(PATH), models_dir=home / "models")
    return ds, load_model(mid, store), url, res


def test_neighbour_occlusion_matches_a_rescore_without_that_link(saved):
    from fraud.supervisor.explain import _inputs, _score, explain_node

    ds, loaded, _, res = saved
    node = int(torch.argmax(res.probs))
    e = explain_node(loaded, ds, node, top=3, max_neighbors=3)
    assert e["flagged"] == (e["score"] >= loaded.threshold) and e["rank"] == 1
    assert len(e["features"]) == 3 and e["features"][0]["method"] == "gradient_x_input"
    assert abs(e["features"][0]["attribution"]) >= abs(e["features"][-1]["attribution"])
    nb = e["neighbors"][0]
    src, dst = ds.data.edge_index
    w = torch.ones(src.numel())
    j = nb["index"]
    w[((src == node) & (dst == j)) | ((src == j) & (dst == node))] = 0
    x, g = _inputs(loaded, ds, edge_weight=w)
    p0, p1 = float(_score(loaded, *_inputs(loaded, ds))[node]), float(_score(loaded, x, g)[node])
    assert abs((math.log(p0 / (1 - p0)) - math.log(p1 / (1 - p1))) - nb["contribution"]) < 1e-4


def test_explain_cli_json(saved, monkeypatch):
    from finllm.cli.main import app

    ds, loaded, url, res = saved
    monkeypatch.setenv("FINLLM_DATABASE_URL", url)
    node_id = ds.node_ids[int(torch.argmax(res.probs))]
    out = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", node_id, "--no-llm",
                                   "--json", "--top", "2", "--max-neighbors", "2"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["node"] == node_id and len(doc["features"]) == 2 and "llm" not in doc and doc["summary"]
    bad = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", "no-such-node", "--no-llm"])
    assert bad.exit_code == 2 and "no node 'no-such-node'" in bad.output


def test_hsign_features_get_gradient_attributions(bitcoin, bitcoin_split):
    """HSIGN caches its label-free encoding without gradients for training; an explanation still needs
    d logit / d x, so the attribution must be finite and not all zero."""
    from fraud.artifacts import LoadedModel
    from fraud.supervisor.explain import feature_attribution
    from fraud.train import train_model

    res = train_model(bitcoin, "hsign", bitcoin_split, 0, epochs=3, patience=3)
    loaded = LoadedModel(id="t", name="hsign", model=res.model, threshold=res.threshold,
                         normalization=res.normalization, config=res.config, metrics={}, dataset="")
    node = int(torch.argmax(res.probs))
    feats = feature_attribution(loaded, bitcoin, node, top=3)
    assert len(feats) == 3 and feats[0]["method"] == "gradient_x_input"
    assert all(math.isfinite(f["attribution"]) for f in feats) and abs(feats[0]["attribution"]) > 0
