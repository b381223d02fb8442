"""Prompt building: bounded size, and no label of a validation/test node (or of the target) leaks."""

from __future__ import annotations

import dataclasses

import torch

from fraud.supervisor.prompt import build_context, count_tokens, describe_node, train_label_view


def _ctx(ds, split, probs, y=None, **kw):
    y = ds.data.y if y is None else y
    known = train_label_view(y, split.train)
    return build_context(ds.data.x, ds.data.edge_index, known, probs, threshold=0.3,
                         feature_names=ds.feature_names, relations=ds.relations, **kw)


def _sample_nodes(ds, split):
    deg = torch.bincount(ds.data.edge_index[0], minlength=ds.num_nodes)
    hubs = torch.argsort(deg, descending=True)[:5]
    hubs = hubs[:3]
    return torch.cat([split.train[:5], split.val[:10], split.test[:15], hubs]).tolist()


def test_train_label_view_hides_everything_but_train(amazon, amazon_split):
    known = train_label_view(amazon.data.y, amazon_split.train)
    assert (known >= 0).sum() == len(amazon_split.train)
    assert torch.equal(known[amazon_split.train], amazon.data.y[amazon_split.train])
    assert (known[amazon_split.val] == -1).all() and (known[amazon_split.test] == -1).all()


def test_prompts_do_not_depend_on_val_or_test_labels(amazon, amazon_split, fake_scores):
    """Flip every validation and test label: every prompt (for train, val, test and hub nodes) must be
    byte-identical, so no prompt can carry information about those labels."""
    y2 = amazon.data.y.clone()
    hidden = torch.cat([amazon_split.val, amazon_split.test])
    y2[hidden] = 1 - y2[hidden]
    a = _ctx(amazon, amazon_split, fake_scores)
    b = _ctx(amazon, amazon_split, fake_scores, y=y2)
    for n in _sample_nodes(amazon, amazon_split):
        pa, pb = describe_node(a, n), describe_node(b, n)
        assert pa.text == pb.text, n
        assert all(pa.neighbor_labels[j] == -1 for j in pa.shown_neighbors if j in set(hidden.tolist()))


def test_target_own_training_label_is_not_shown(amazon, amazon_split, fake_scores):
    """A training node's own label must not reach its prompt (the noise check needs an independent view),
    while flipping the label of a training node used as an example for another node does change that
    node's prompt (so the comparison below is able to fail)."""
    ctx = _ctx(amazon, amazon_split, fake_scores)

    def flipped(n):
        known = ctx.known.copy()
        known[n] = 1 - known[n]  # what train_label_view gives after flipping y[n]
        return dataclasses.replace(ctx, known=known)

    for n in amazon_split.train[:15].tolist():
        assert describe_node(ctx, n).text == describe_node(flipped(n), n).text
    target = int(amazon_split.test[0])
    example = describe_node(ctx, target).example_nodes[0]
    assert describe_node(flipped(example), target).text != describe_node(ctx, target).text


def test_training_labels_of_neighbours_are_used(amazon, amazon_split, fake_scores):
    """The positive counterpart: the prompt does show neighbours' training labels (test can fail)."""
    ctx = _ctx(amazon, amazon_split, fake_scores)
    shown = [describe_node(ctx, n).text for n in _sample_nodes(amazon, amazon_split)]
    assert any("label fraud" in t or "label normal" in t or "(fraud)" in t for t in shown)


def test_prompt_size_is_bounded_and_pruned(amazon, amazon_split, fake_scores):
    ctx = _ctx(amazon, amazon_split, fake_scores)
    for budget in (120, 250, 600):
        for n in _sample_nodes(amazon, amazon_split):
            p = describe_node(ctx, n, token_budget=budget)
            assert p.tokens <= budget and count_tokens(p.text) == p.tokens
            assert p.text.startswith(f"Target account n{n}")
            for j in p.shown_neighbors:  # every id the LLM may name is really in the text
                assert f"n{j} " in p.text
    hub = int(torch.bincount(amazon.data.edge_index[0]).argmax())
    assert describe_node(ctx, hub, token_budget=250).pruned
    assert not describe_node(ctx, hub, token_budget=5000).pruned


def test_long_feature_names_still_bounded(amazon, amazon_split, fake_scores):
    names = [f"feature_with_an_absurdly_long_name_number_{i}_" * 4 for i in range(amazon.data.x.size(1))]
    ctx = _ctx(amazon, amazon_split, fake_scores)
    ctx.feature_names = names
    p = describe_node(ctx, int(amazon_split.test[0]), token_budget=80)
    assert p.tokens <= 80 and p.pruned


def test_named_features_show_values_and_percentiles():
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 40.0]])
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    y = torch.tensor([0, 1, 0, 1])
    ctx = build_context(x, ei, train_label_view(y, torch.tensor([0, 1])), torch.tensor([0.1, 0.9, 0.2, 0.8]),
                        feature_names=["amount", "age"])
    t = describe_node(ctx, 3).text
    assert "amount = 100: 88th percentile (high)" in t
    assert "n2 [link]" in t and "label unknown" in t  # node 2 is not a training node
    t2 = describe_node(ctx, 2).text
    assert "1 fraud, 0 normal, 1 unknown" in t2  # neighbours 1 (train fraud) and 3 (not train)


def test_retrieval_uses_training_nodes_only_and_excludes_target(amazon, amazon_split, fake_scores):
    emb = torch.randn(amazon.num_nodes, 8, generator=torch.Generator().manual_seed(1))
    ctx = _ctx(amazon, amazon_split, fake_scores, embeddings=emb)
    train = set(amazon_split.train.tolist())
    for n in amazon_split.train[:5].tolist() + amazon_split.test[:5].tolist():
        ex = describe_node(ctx, n, max_examples=3).example_nodes
        assert len(ex) == 3 and n not in ex and set(ex) <= train
        assert {int(amazon.data.y[e]) for e in ex} == {0, 1}  # a contrasting example is included


def test_supervisor_prompt_leaves_out_the_targets_own_score(amazon, amazon_split, fake_scores):
    """The supervisor asks with ``show_score=False``: changing only the target's own score leaves its
    prompt unchanged (an LLM cannot echo what it is not shown), while the default prompt shows it."""
    node = int(amazon_split.val[0])
    a = _ctx(amazon, amazon_split, fake_scores)
    other = fake_scores.clone()
    other[node] = 1.0 - other[node]
    b = _ctx(amazon, amazon_split, other)
    assert describe_node(a, node, show_score=False).text == describe_node(b, node, show_score=False).text
    assert describe_node(a, node).text != describe_node(b, node).text
    assert "GNN fraud score" not in describe_node(a, node, show_score=False).text


def test_compact_description_is_short_and_shows_no_detector_score(amazon, amazon_split, fake_scores):
    """The supervisor's verdict prompt: a few dozen tokens (a small CPU model pays for each), the
    target's id, its most unusual features and its neighbours' *training* labels; no score at all."""
    from fraud.supervisor.prompt import describe_compact

    ctx = build_context(amazon.data.x, amazon.data.edge_index, train_label_view(amazon.data.y, amazon_split.train),
                        fake_scores, feature_names=amazon.feature_names, relations=amazon.relations)
    for node in [int(i) for i in amazon_split.test[:20]]:
        p = describe_compact(ctx, node)
        assert p.tokens <= 60 and p.text.startswith(f"Target account n{node}\n")
        assert "score" not in p.text.lower() and p.text.count(" pct") == 4
        nb = ctx.adj.indices[ctx.adj.indptr[node]: ctx.adj.indptr[node + 1]]
        fraud = int((ctx.known[nb] == 1).sum())
        assert f"Neighbours: {nb.size}; of them labelled fraud {fraud}," in p.text
