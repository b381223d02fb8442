"""Bounded random search on validation AUPRC, with GADBench's hyperparameter spaces (``utils.py``'s
``param_space``) where GADBench has the model.

Trial 0 is the model's defaults (``fraud.train.DEFAULTS``, as GADBench's trial 0 is its defaults); trials
1.. draw every hyperparameter uniformly from its list, with a generator seeded by (seed, model), so the same
seed draws the same trials. The search stops after ``trials`` trials or at ``deadline`` (checked before
each trial after the first, so the defaults always run); the result says how many ran. The best trial on
validation AUPRC is kept, or with ``keep=k`` the rank average of the k best (``--model auto`` does this for
XGBGraph: a single best trial on a small validation set is mostly a lucky draw,
bench/results/fraud_auto_xgb_study.md); test figures are computed by ``train_model`` but never looked at here.

Spaces that differ from GADBench: XGBGraph/RF-Graph see ``fraud.baselines``; BWGNN's ``order`` is
GADBench's ``num_layers`` (the wavelet order), its MLP depth and activation are fixed; HSIGN is finllm's
own model, so its space is finllm's (around the defaults chosen on seeds 5-9 of the shipped graphs).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from finllm.errors import DataError

if TYPE_CHECKING:
    from fraud.datasets import GraphDataset
    from fraud.splits import Split
    from fraud.train import TrainResult

_LR = tuple(float(v) for v in 10 ** np.linspace(-3, -1, 1000))
_DROP = (0.0, 0.1, 0.2, 0.3)
_HOPS_AGG: dict[str, Sequence[Any]] = {"hops": (1, 2, 3, 4), "agg": ("all", "sum", "max", "mean")}
_CONTRAST: dict[str, Sequence[Any]] = {"contrast": (False, True)}  # beyond GADBench: fraud.baselines

SPACES: dict[str, dict[str, Sequence[Any]]] = {
    "xgbgraph": {"n_estimators": range(10, 201), "eta": tuple(float(v) for v in 0.5 * 10 ** np.linspace(-1, 0, 1000)),
                 "lambda": (0.0, 1.0, 10.0), "subsample": (0.5, 0.75, 1.0), **_HOPS_AGG, **_CONTRAST},
    "rfgraph": {"n_estimators": range(10, 201), "max_samples": (0.5, 0.75, 1.0),
                "max_features": ("sqrt", "log2", None), **_HOPS_AGG, **_CONTRAST},
    "mlp": {"hidden": (16, 32, 64), "layers": (1, 2, 3, 4), "dropout": _DROP, "lr": _LR,
            "activation": ("relu", "leakyrelu", "tanh")},
    "bwgnn": {"hidden": (16, 32, 64), "order": (1, 2, 3, 4), "dropout": _DROP, "lr": _LR},
    "sage": {"hidden": (16, 32, 64), "layers": (1, 2, 3), "dropout": _DROP, "lr": _LR},
    "hsign": {"hidden": (32, 64), "hops": (1, 2, 3), "bins": (0, 8, 16), "l1": (0.1, 0.3, 1.0),
              "nb_l1": (1.0, 3.0, 10.0), "lr": (0.003, 0.01, 0.03)},
}


def _plain(v: Any) -> Any:
    """numpy scalars -> Python (JSON-able, and what the model constructors expect)."""
    return v.item() if isinstance(v, np.generic) else v


def sample(space: dict[str, Sequence[Any]], rng: np.random.Generator) -> dict[str, Any]:
    """One draw: every hyperparameter uniformly from its list."""
    return {k: _plain(v[int(rng.integers(len(v)))]) for k, v in space.items()}


def tune(ds: GraphDataset, name: str, split: Split, seed: int, *, trials: int, deadline: float, cache: dict | None = None,
         on_trial: Callable[[dict], None] | None = None, keep: int = 1,
         **train_opts: Any) -> tuple[TrainResult, list[dict]]:
    """Random search for model ``name``; returns (the result, trial log).

    The result is the best trial on validation AUPRC, or with ``keep`` > 1 (and at least 2 trials that ran)
    the rank-average ensemble (:func:`fraud.models.ensemble.combine_results`, model name ``ensemble``) of the
    ``keep`` best trials on validation AUPRC; ``config["tuned"]`` says which.
    ``deadline``: a ``time.perf_counter()`` value; ``on_trial(log_row)`` is called after every trial.
    A trial that diverges (DataError from training) is logged and skipped; if every trial does, the
    last error is raised."""
    from fraud.train import train_model

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    top: list[tuple[float, int, TrainResult]] = []  # the max(keep, 1) best trials so far, best first
    log, error = [], None
    for t in range(max(int(trials), 1)):
        if t and time.perf_counter() >= deadline:
            break
        params = sample(SPACES[name], rng) if t else {}
        lr = params.pop("lr", None)
        row: dict[str, Any] = {"trial": t}
        try:
            res = train_model(ds, name, split, seed, hparams=params, lr=lr, cache=cache, **train_opts)
        except DataError as exc:
            error = exc
            row.update(hparams=params, lr=lr, error=str(exc))
        else:
            row.update(hparams=res.config["hparams"], lr=res.config.get("lr"), val_auprc=res.metrics["val"]["auprc"],
                       test_auprc=res.metrics["test"]["auprc"],  # recorded for the bench, never used here
                       seconds=res.metrics["train_time_s"])
            top.append((-res.metrics["val"]["auprc"], t, res))  # ties: the earlier trial first
            top = sorted(top, key=lambda r: r[:2])[: max(int(keep), 1)]
        log.append(row)
        if on_trial is not None:
            on_trial(row)
    if not top:
        raise error if error is not None else DataError(f"{ds.name}: no {name} trial ran")
    if len(top) < 2:
        best = top[0][2]
        best.config["tuned"] = {"candidate": name, "trials": [top[0][1]]}
        return best, log
    from fraud.models.ensemble import combine_results

    best = combine_results([r for _, _, r in top], split, ds.data.y)
    best.config["tuned"] = {"candidate": name, "trials": [t for _, t, _ in top]}
    return best, log
