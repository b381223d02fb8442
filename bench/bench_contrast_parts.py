"""Which part of the tree candidates' contrast block matters (issue 21, stop 29): XGBGraph with its defaults
on each graph, then with one part of the block at a time (``nearest`` = min_j |x_i - x_j|, ``highpass`` =
x - A x, ``degree`` = log1p(degree)), then with all of it (``fraud.baselines.FeatureBank.contrast``, which
this study swaps for a slice of itself). Full setting, seeds 0..``--seeds``-1, validation and test AUPRC
(the study reads test only to report it).

    python bench/bench_contrast_parts.py --graphs syn10k,imit_hetero,imit_features,bitcoin,amazon --seeds 3 \\
        --out bench/results/fraud_contrast_parts.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PARTS = ("none", "nearest", "highpass", "degree", "all")


def run(graphs: list[str], seeds: int) -> list[tuple[str, str, float, float]]:
    """Rows (graph, part, mean validation AUPRC, mean test AUPRC)."""
    import bench_fraud_auto as bfa

    import fraud.baselines as fb
    from fraud.splits import make_split
    from fraud.train import train_model

    whole = fb.FeatureBank.contrast
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for graph in graphs:
            ds = bfa.load(graph, Path(tmp))
            f = int(ds.data.x.size(1))
            cols = {"nearest": slice(0, f), "highpass": slice(f, 2 * f), "degree": slice(2 * f, 2 * f + 1)}
            for part in PARTS:
                fb.FeatureBank.contrast = (whole if part not in cols else
                                           lambda self, rel, s=cols[part]: whole(self, rel)[:, s])
                figs = []
                for seed in range(seeds):
                    r = train_model(ds, "xgbgraph", make_split(ds, "full", seed), seed,
                                    hparams={"contrast": part != "none"}, patience=30)
                    figs.append((r.metrics["val"]["auprc"], r.metrics["test"]["auprc"]))
                v, t = np.mean(figs, 0)
                rows.append((graph, part, float(v), float(t)))
                print(f"{graph} {part}: val {v:.4f} test {t:.4f}", file=sys.stderr, flush=True)
    fb.FeatureBank.contrast = whole
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", default="syn10k,imit_hetero,imit_features,bitcoin,amazon")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench/results/fraud_contrast_parts.md"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = run(args.graphs.split(","), args.seeds)
    lines = [f"XGBGraph defaults plus parts of the contrast block; full setting, seeds 0-{args.seeds - 1}, mean AUPRC.",
             "", "| graph | contrast part | valid AUPRC | test AUPRC |", "|---|---|---|---|"]
    lines += [f"| {g} | {p} | {v:.4f} | {t:.4f} |" for g, p, v, t in rows]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
