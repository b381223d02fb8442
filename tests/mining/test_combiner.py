"""How a pool is combined after train (factors.combiner) on a slice of the real US panel: the walk-forward
re-fits never read an unrealised return, recover a relation that changed after train, are chosen on valid
only, and stay within their memory limit."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from factors import combiner
from factors.combiner import REFITS, combiner_signals, feature_combiner_signals, pool_signal
from factors.mine import MineConfig, load_for_mining
from factors.scoring import SplitScorer
from finllm.cli.main import app
from tests.mining.conftest import SPLITS

MEMBERS = [(["$close", "5", "Mean", "$close", "Div"], 0.9), (["$volume", "20", "Std", "$volume", "Div"], 0.1),
           (["$high", "$low", "Div"], -0.2)]


@pytest.fixture(scope="module")
def loaded(us_slice):
    cfg = MineConfig(data=str(us_slice), **SPLITS)
    return load_for_mining(cfg), cfg


@pytest.fixture
def sc(loaded) -> SplitScorer:
    (panel, splits), cfg = loaded
    return SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, cfg.warmup_days)


def _first_valid(sc: SplitScorer) -> int:
    return int(sc.days["valid"].nonzero()[0])


def _regime_target(sc: SplitScorer, seed: int = 0) -> torch.Tensor:
    """A target that follows member 0 until the valid split and member 1 from then on, plus noise. (D, S)"""
    g = torch.Generator().manual_seed(seed)
    z0, z1 = (sc.zscore(sc.ev.evaluate(t)) for t, _ in MEMBERS[:2])
    after = torch.arange(len(z0))[:, None] >= _first_valid(sc) - 5
    y = torch.where(after, z1, z0) + 0.7 * torch.randn(z0.shape, generator=g)
    return torch.where(sc.mask, y, torch.full((), float("nan")))


def test_refits_follow_a_relation_that_changed_after_train_and_auto_picks_them_on_valid(sc) -> None:
    sc.target = _regime_target(sc)
    x, rec = pool_signal(sc, MEMBERS, "auto")
    cand = rec["candidates"]
    assert cand["fitted"]["valid"] < 0.2  # the train weights point at member 0, which stopped working
    assert cand["refit250"]["valid"] > cand["fitted"]["valid"] + 0.2 and cand["refit250"]["test"] > 0.4
    assert rec["chosen"] == max(cand, key=lambda k: cand[k]["valid"]) and rec["chosen"] != "fitted"
    # train days keep the train weights whatever the combiner
    train = sc.days["train"]
    torch.testing.assert_close(x[train], sc.combine(MEMBERS)[train], equal_nan=True)


def test_no_refit_reads_a_return_not_yet_realised(sc) -> None:
    sc.target = _regime_target(sc)
    before, _ = combiner_signals(sc, MEMBERS)
    t = int(sc.days["test"].nonzero()[len(sc.days["test"].nonzero()) // 2])
    changed = sc.target.clone()
    changed[t - sc.horizon:] = torch.randn(changed[t - sc.horizon:].shape)  # returns not known on day t
    sc.target = torch.where(sc.mask, changed, torch.full((), float("nan")))
    after, _ = combiner_signals(sc, MEMBERS)
    for r in REFITS:
        torch.testing.assert_close(after[r.name][:t + 1], before[r.name][:t + 1], equal_nan=True)
        assert not torch.allclose(after[r.name][t + 1:].nan_to_num(), before[r.name][t + 1:].nan_to_num())


def test_the_choice_never_reads_the_test_split(sc) -> None:
    sc.target = _regime_target(sc)
    _, rec = pool_signal(sc, MEMBERS, "auto")
    test = sc.days["test"]
    flipped = sc.target.clone()
    flipped[test] = -flipped[test]  # whatever won on test now loses there
    sc.target = flipped
    _, rec2 = pool_signal(sc, MEMBERS, "auto")
    assert rec2["chosen"] == rec["chosen"]
    assert all(rec2["candidates"][k]["valid"] == pytest.approx(v["valid"]) for k, v in rec["candidates"].items())
    # the test figures did change (the re-fits learn the flipped relation on later test days)
    assert rec2["candidates"]["fitted"]["test"] == pytest.approx(-rec["candidates"]["fitted"]["test"], abs=1e-6)


def test_evaluated_features_and_expressions_give_the_same_signals(sc) -> None:
    feats = torch.stack([torch.where(torch.isfinite(v := sc.ev.evaluate(t)) & sc.mask, sc.zscore(v),
                                     torch.full((), float("nan"))) for t, _ in MEMBERS])
    a, _ = combiner_signals(sc, MEMBERS)
    b, _ = feature_combiner_signals(sc, feats, torch.tensor([w for _, w in MEMBERS]))
    assert a.keys() == b.keys() == {"fitted", *(r.name for r in REFITS)}
    for k in a:
        torch.testing.assert_close(a[k], b[k], equal_nan=True, atol=1e-4, rtol=1e-4)


def test_a_pool_too_large_for_the_gram_limit_keeps_its_train_weights(sc, monkeypatch) -> None:
    monkeypatch.setattr(combiner, "GRAM_LIMIT_BYTES", 1000)
    x, rec = pool_signal(sc, MEMBERS, "auto")
    assert rec["chosen"] == "fitted" and "GiB of Gram matrices" in rec["skipped"]
    torch.testing.assert_close(x, sc.combine(MEMBERS), equal_nan=True)
    x, rec = pool_signal(sc, MEMBERS, "refit500")
    assert rec["chosen"] == "fitted" and rec["requested"] == "refit500"


def test_mine_records_the_combiner_and_refuses_an_unknown_one(us_slice, tmp_path) -> None:
    args = ["factors", "mine", "--data", str(us_slice), "--train", SPLITS["train"], "--valid", SPLITS["valid"],
            "--test", SPLITS["test"], "--out", str(tmp_path / "m"), "--pool-size", "4", "--minutes", "3",
            "--restarts", "1", "--max-factors", "40", "--method", "gp", "--no-store", "--json"]
    res = CliRunner().invoke(app, [*args, "--combiner", "refit500"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["combiner"]["requested"] == "refit500" and doc["config"]["combiner"] == "refit500"
    assert set(doc["combiner"]["candidates"]) == {"fitted", "refit500"}
    if doc["combiner"]["chosen"] == "refit500":  # the run's test figure is the re-fit signal's
        assert doc["metrics"]["test"]["rank_ic"] == pytest.approx(doc["combiner"]["candidates"]["refit500"]["test"],
                                                                 abs=1e-6)
    bad = CliRunner().invoke(app, [*args, "--combiner", "magic"])
    assert bad.exit_code == 2 and "--combiner 'magic'" in bad.output and "Traceback" not in bad.output


def test_lightgbm_walk_forward_reads_only_realised_labels() -> None:
    """The LightGBM counterpart of the re-fits (the bench's fair comparison): a model used from day t was
    trained on labels of days < t - horizon only, and it learns the relation."""
    from factors.lgbm_baseline import walk_forward_predict

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 400, 60, generator=g)
    label = feats[0] + 0.5 * torch.randn(400, 60, generator=g)
    mask = torch.ones(400, 60, dtype=torch.bool)
    kw = dict(window=100, every=50, rounds=10, num_threads=1)
    pred = walk_forward_predict(feats, label, mask, 200, 5, **kw)
    assert torch.isnan(pred[:200]).all() and torch.isfinite(pred[200:]).all()
    assert torch.corrcoef(torch.stack([pred[200:].flatten(), label[200:].flatten()]))[0, 1] > 0.5
    changed = label.clone()
    changed[300 - 5:] = torch.randn(changed[295:].shape, generator=g)  # not realised before day 300
    again = walk_forward_predict(feats, changed, mask, 200, 5, **kw)
    assert torch.equal(again[200:350], pred[200:350])  # the model of days 300-349 was trained before day 295
    assert not torch.equal(again[350:], pred[350:])


def test_a_block_is_evaluated_on_its_own_days_and_the_history_they_need(sc) -> None:
    """The walk-forward re-fits evaluate the members block by block on a panel of the block's days plus the history
    the members need: bit for bit the whole panel's values, and one day of history less is not."""
    from factors.pool import zscore_days
    from factors.splits import history_needed

    members = [*MEMBERS, (["$close", "5", "Ref", "20", "Mean"], 0.3), (["$close", "$volume", "10", "Corr"], 0.1)]
    need = history_needed([t for t, _ in members])
    assert need == 24  # Mean(Ref($close, 5), 20)
    D = sc.mask.shape[0]
    for lo, hi in ((0, 50), (need + 7, need + 90), (D - 40, D)):
        got = combiner._z_block(sc, members, lo, hi, need)
        want = torch.stack([zscore_days(sc.ev.evaluate(t)[lo:hi], sc.mask[lo:hi])[0] for t, _ in members], -1)
        assert torch.equal(got, want)
        assert torch.equal(combiner._z_block(sc, members, lo, hi, None), want)  # the whole panel, the former way
    short = combiner._z_block(sc, members, need + 7, need + 90, need - 1)
    assert not torch.equal(short, combiner._z_block(sc, members, need + 7, need + 90, need))
