"""Scale benchmark: GNN training and scoring on a synthetic 1M-node / ~10M-edge graph.

Reports the data-layer validation time, training time per epoch, peak memory (max RSS, must fit in
24 GB) and scoring throughput in nodes/s (goal >= 100k/s). Scoring is ``fraud.score.predict``, what
``finllm fraud score`` runs after loading the graph: normalise features, build the sparse operator,
full-graph inference. Side by side, the same 2-layer GraphSAGE forward pass written the straightforward
way (PyG ``SAGEConv``, gather/scatter messages) is timed on the same graph, and the ratio is printed.
``--minibatch`` trains with PyG's NeighborLoader instead (needs the optional ``finllm[sparse]`` extra);
the result file then gets a ``_minibatch`` suffix unless ``--out`` is given.

    python bench/bench_fraud_scale.py                       # 1M nodes, 5M undirected = 10M directed edges
    python bench/bench_fraud_scale.py --epochs 0 --out bench/results/fraud_scale_score.json   # scoring only
    python bench/bench_fraud_scale.py --nodes 100000 --edges 1000000   # quick look
    python bench/bench_fraud_scale.py --epochs 2 --minibatch           # NeighborLoader (finllm[sparse])
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def synthetic(n: int, e_undirected: int, f: int, seed: int):
    """Random graph with 5% fraud: frauds have shifted features and attach preferentially to normals."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[y == 1, : f // 2] += 0.6
    src = rng.integers(0, n, e_undirected)
    dst = rng.integers(0, n, e_undirected)
    return x, y, src, dst


def _pyg_sage(f: int, h: int = 64):
    """The same 2-layer GraphSAGE (input layer, 2 convs, jumping-knowledge head) from PyG ``SAGEConv``:
    messages gathered per edge (E x H) and scatter-meaned."""
    import torch
    from torch import nn
    from torch_geometric.nn import SAGEConv

    class PygSage(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(f, h)
            self.convs = nn.ModuleList([SAGEConv(h, h), SAGEConv(h, h)])
            self.head = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Linear(h, 1))

        def forward(self, x, ei):
            z = torch.relu(self.inp(x))
            outs = [z]
            for c in self.convs:
                z = torch.relu(c(z, ei))
                outs.append(z)
            return self.head(torch.cat(outs, 1)).squeeze(-1)

    return PygSage()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=5_000_000, help="undirected edges (stored both ways)")
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--model", default="sage")
    ap.add_argument("--epochs", type=int, default=3, help="0 = scoring only (untrained weights: same speed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="scoring runs (ours and the reference alternate)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the PyG SAGEConv comparison")
    ap.add_argument("--minibatch", action="store_true", help="train with NeighborLoader (needs torch-sparse)")
    ap.add_argument("--batch-size", type=int, default=2048, help="mini-batch seed nodes")
    ap.add_argument("--fanout", default="15,10", help="mini-batch neighbours sampled per hop")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/fraud_scale[_minibatch].json)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(REPO / f"bench/results/fraud_scale{'_minibatch' if args.minibatch else ''}.json")

    import torch

    from fraud.artifacts import LoadedModel
    from fraud.datasets import _finalize
    from fraud.models import GraphOps
    from fraud.score import predict
    from fraud.splits import make_split
    from fraud.fit_loop import minibatch_available
    from fraud.train import apply_normalization, train_model

    if args.minibatch and not minibatch_available():
        print("--minibatch needs torch-sparse (pip install 'finllm[sparse]')", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "loadavg_start": round(os.getloadavg()[0], 2)}
    t = time.perf_counter()
    x, y, src, dst = synthetic(args.nodes, args.edges, args.features, 0)
    res["generate_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    ds = _finalize(Path("synthetic"), x=x, y=y, src=src, dst=dst, etype=src * 0, relations=["homo"],
                   node_ids=None, feature_names=None, masks=None)
    res["load_validate_s"] = round(time.perf_counter() - t, 2)
    res["directed_edges"] = int(ds.data.edge_index.size(1))
    res["report"] = ds.report
    print(f"graph: {args.nodes} nodes, {res['directed_edges']} directed edges; validated in "
          f"{res['load_validate_s']} s", file=sys.stderr, flush=True)

    t = time.perf_counter()
    split = make_split(ds, "full", 0)
    fanout = tuple(int(f) for f in args.fanout.split(","))
    tr = train_model(ds, args.model, split, 0, epochs=args.epochs, patience=args.epochs, progress=True,
                     minibatch=args.minibatch, batch_size=args.batch_size, fanout=fanout)
    res["train_s"] = round(time.perf_counter() - t, 2)
    res["epochs_run"] = len(tr.history)
    res["s_per_epoch"] = round(tr.metrics["train_time_s"] / max(len(tr.history), 1), 2)
    res["test_auroc"] = round(tr.metrics["test"]["auroc"], 4)
    res["test_auprc"] = round(tr.metrics["test"]["auprc"], 4)
    res["peak_rss_gb_after_train"] = round(rss_gb(), 2)
    res["training"] = "minibatch NeighborLoader" if args.minibatch else "full-batch"
    print(f"train ({res['training']}): {res['train_s']} s ({res['s_per_epoch']} s/epoch incl. validation), peak RSS "
          f"{res['peak_rss_gb_after_train']} GB, test AUROC {res['test_auroc']}", file=sys.stderr, flush=True)

    # scoring = what `finllm fraud score` does after loading: normalise, build operators, infer.
    # Ours and the PyG reference alternate, --repeats times each; medians are compared.
    loaded = LoadedModel(id="bench", name=args.model, model=tr.model, threshold=tr.threshold,
                         normalization=tr.normalization, config=tr.config, metrics={}, dataset="synthetic")
    with torch.inference_mode():
        xn = apply_normalization(ds.data.x, tr.normalization)
    t = time.perf_counter()
    GraphOps(ds.data.edge_index, ds.num_nodes).mean_adj()
    res["score_graph_build_s"] = round(time.perf_counter() - t, 3)
    base = None
    if not args.no_baseline and args.model == "sage":
        base = _pyg_sage(args.features).eval()
    ours, ref = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        probs = predict(loaded, ds)
        ours.append(time.perf_counter() - t)
        assert torch.isfinite(probs).all()
        del probs
        if base is not None:
            t = time.perf_counter()
            with torch.inference_mode():
                base(xn, ds.data.edge_index)
            ref.append(time.perf_counter() - t)
    score_s = statistics.median(ours)
    res["score_s_runs"] = [round(v, 3) for v in ours]
    res["score_s"] = round(score_s, 3)
    res["score_inference_only_nodes_per_s"] = round(ds.num_nodes / max(score_s - res["score_graph_build_s"], 1e-9))
    res["score_nodes_per_s"] = round(ds.num_nodes / score_s)
    res["score_nodes_per_s_best"] = round(ds.num_nodes / min(ours))
    res["score_goal_ratio"] = round(res["score_nodes_per_s"] / 100_000, 2)
    if ref:
        b = statistics.median(ref)
        res["baseline_pyg_sageconv_score_s_runs"] = [round(v, 3) for v in ref]
        res["baseline_pyg_sageconv_score_s"] = round(b, 3)
        res["baseline_nodes_per_s"] = round(ds.num_nodes / b)
        res["speedup_vs_pyg_sageconv"] = round(b / score_s, 2)
    res["peak_rss_gb"] = round(rss_gb(), 2)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(f"\nscale bench ({args.model}, {args.nodes:,} nodes, {res['directed_edges']:,} directed edges, "
          f"{args.threads} threads, load average {res['loadavg_start']} at start, {res['loadavg_end']} at end)")
    print(f"  load+validate        {res['load_validate_s']:>10} s")
    print(f"  train ({res['training']}) {res['train_s']:>10} s  ({res['epochs_run']} epochs, {res['s_per_epoch']} s/epoch)")
    print(f"  peak RSS (train)     {res['peak_rss_gb_after_train']:>10} GB  (limit 24 GB)")
    print(f"  scoring (median of {args.repeats}) {res['score_nodes_per_s']:>10,} nodes/s  = {res['score_goal_ratio']}x "
          f"the 100k/s goal (best {res['score_nodes_per_s_best']:,}; runs {res['score_s_runs']} s, each incl. "
          f"normalising and building the sparse operator, {res['score_graph_build_s']} s alone)")
    if "speedup_vs_pyg_sageconv" in res:
        print(f"  PyG SAGEConv scoring {res['baseline_nodes_per_s']:>10,} nodes/s  (runs "
              f"{res['baseline_pyg_sageconv_score_s_runs']} s) -> finllm is {res['speedup_vs_pyg_sageconv']}x faster")
    print(f"  peak RSS (all)       {res['peak_rss_gb']:>10} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
