"""GADBench's tree detectors on neighbourhood aggregations: XGBGraph (XGBoost) and RF-Graph (random forest).

Features, as GADBench's parameter-free GIN (``init_eps=-1``, so a node's own row is not mixed in): for
each aggregation ``a`` and hop ``k = 1..hops``, ``h_a^k = AGG_a(h_a^{k-1})`` over the in-neighbours with
``h_a^0 = x``, on the whole graph and, when the graph has several relations, on each relation's edges:
``[x, h_{op,a}^k ...]`` (N, F * (1 + R' * |aggs| * hops)), R' = 1 or 1 + R. ``mean`` and ``sum`` are
edge-weighted (weight 0 = no edge, so the supervisor's ``edge_weight`` is honoured); ``max``/``min`` take
the edges with weight > 0 unweighted; a node without neighbours gets 0.

Contrast blocks (``contrast=True``; beyond GADBench, a hyperparameter the random search draws, off in the
defaults): per operator, ``[min_j |x_i - x_j|, x - A x, log1p(degree)]`` over the in-neighbours j
(N, 2F + 1). A tree splits on one column at a time, so it cannot compare a node with its neighbours from
``x`` and ``A x`` side by side without many splits; camouflaged fraud is what such a comparison shows (a
ring sharing a device value among many unrelated neighbours: CARE-GNN's similarity argument; ``x - A x`` is
the high-pass filter BWGNN's spectral argument is about). ``min_j |x_i - x_j|`` is NaN for a node without
neighbours (a missing value to the trees, not "an identical neighbour"). Cost O(E F), no (E, F) tensor.

What differs from GADBench (``models/detector.py`` + ``utils.py``'s ``param_space``), and why:

* Aggregations: GADBench draws one of sum / max / mean per trial on the homogeneous graph. Here ``agg`` may
  also be ``all`` (mean, max, min and sum side by side: the default, as the trees pick the columns they
  need) and every relation gets its own block besides the whole graph (fraud relations differ in meaning).
* XGBGraph stops early on validation AUPRC (``patience`` rounds, at most ``n_estimators``); GADBench runs
  all rounds. Same choice by validation, cheaper. ``booster='dart'`` is left out of the space: GADBench
  passes XGBoost's default ``rate_drop=0``, with which dart grows the same trees as gbtree, only slower.
  CPU ``hist`` instead of ``gpu_hist``.
* RF-Graph is LightGBM's random-forest mode (``boosting='rf'``), not scikit-learn's
  ``RandomForestClassifier``: scikit-learn is not a dependency of finllm and LightGBM already is.
  LightGBM bags without replacement, so GADBench's ``max_samples`` m (bootstrap size / N) becomes
  ``bagging_fraction = 1 - exp(-m)``, the expected share of distinct rows in such a bootstrap;
  ``max_features`` (sqrt / log2 / all) becomes ``feature_fraction_bynode``; trees grow to 512 leaves
  with one sample per leaf allowed (scikit-learn: unlimited). ``criterion`` (gini / entropy) has no
  counterpart: splits maximise the log-loss gain.
* Class weight #neg/#pos on fraud as GADBench's ``weight``, times the supervisor's node weights; soft
  targets (LLM verdicts) enter as fractional labels, weighted as in the networks' loss (``_with_soft``).
  Inputs are finllm's normalised features (signed log1p, z-score): per column monotone, so a tree on ``x``
  splits as on the raw values.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch

from fraud.models.detector import FitOutcome
from fraud.models.graph_ops import GraphOps

if TYPE_CHECKING:
    from fraud.models.detector import FitData, FitOptions

AGGS = ("mean", "max", "min", "sum")
AGG_CHOICES: dict[str, tuple[str, ...]] = {"all": AGGS, "mean": ("mean",), "max": ("max",), "sum": ("sum",)}
TreeKind = Literal["xgboost", "lightgbm"]


def _hop(g: GraphOps, rel: int | None, agg: str, h: torch.Tensor) -> torch.Tensor:
    if agg == "mean":
        return g.mean_adj(rel).matmul(h)
    if agg == "sum":
        return g.sum_adj(rel).matmul(h)
    return g.mean_adj(rel).reduce(h, agg)


def _operators(g: GraphOps, relations: bool) -> list[int | None]:
    return [None] + (list(range(g.num_relations)) if relations and g.num_relations > 1 else [])


class FeatureBank:
    """The aggregation chains and contrast blocks of one (normalised x, graph), computed on demand and kept,
    so a random search over ``hops`` / ``agg`` / ``contrast`` builds each once. ``get`` returns what :func:`aggregate_features`
    returns for the same arguments (same columns, same order)."""

    def __init__(self, x: torch.Tensor, g: GraphOps) -> None:
        self.x, self.g = x.detach().float().contiguous(), g
        self._chains: dict[tuple[int | None, str], list[torch.Tensor]] = {}
        self._contrast: dict[int | None, torch.Tensor] = {}

    def chain(self, rel: int | None, agg: str, hops: int) -> list[torch.Tensor]:
        c = self._chains.setdefault((rel, agg), [])
        while len(c) < hops:
            c.append(_hop(self.g, rel, agg, c[-1] if c else self.x))
        return c[:hops]

    def contrast(self, rel: int | None) -> torch.Tensor:
        """(N, 2F+1) the contrast block of operator ``rel``: ``[min_j |x_i - x_j|, x - A x, log1p(degree)]``
        over the in-neighbours j with weight > 0 (see the module docstring)."""
        if rel not in self._contrast:
            a = self.g.mean_adj(rel)
            self._contrast[rel] = torch.cat([a.nearest(self.x), self.x - self.chain(rel, "mean", 1)[0],
                                             torch.log1p(a.degree()).unsqueeze(1)], 1)
        return self._contrast[rel]

    def get(self, hops: int, aggs: tuple[str, ...], relations: bool, contrast: bool = False) -> torch.Tensor:
        cols = [self.x]
        for rel in _operators(self.g, relations):
            for a in aggs:
                cols += self.chain(rel, a, hops)
        if contrast:
            cols += [self.contrast(rel) for rel in _operators(self.g, relations)]
        return torch.cat(cols, 1)


def aggregate_features(x: torch.Tensor, g: GraphOps, hops: int = 2, aggs: tuple[str, ...] = ("mean",),
                       relations: bool = False, contrast: bool = False) -> torch.Tensor:
    """(N,F) -> (N, F*(1 + R'*len(aggs)*hops) [+ R'*(2F+1) with ``contrast``]); the defaults give
    ``[x, A x, A^2 x]`` (mean aggregation)."""
    bad = set(aggs) - set(AGGS)
    if bad:
        raise ValueError(f"unknown aggregation(s) {sorted(bad)} (choose from {', '.join(AGGS)})")
    return FeatureBank(x, g).get(int(hops), tuple(aggs), relations, contrast)


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns a tree model splits on: ``hops`` x ``aggs`` chains, per relation or not, and the
    contrast blocks."""

    hops: int = 2
    aggs: tuple[str, ...] = ("mean",)
    relations: bool = False
    contrast: bool = False


def feature_spec(hp: dict) -> FeatureSpec:
    """The :class:`FeatureSpec` of a tree model's hyperparameters. Models saved before ``agg`` existed
    were trained on ``[x, A x, A^2 x]`` (mean, whole graph); before ``contrast``, without contrast blocks."""
    if "agg" not in hp:
        return FeatureSpec(int(hp.get("hops", 2)))
    return FeatureSpec(int(hp["hops"]), AGG_CHOICES[hp["agg"]], bool(hp.get("relations", True)),
                       bool(hp.get("contrast", False)))


@dataclass
class TreeModel:
    """A tree detector (``name`` xgbgraph or rfgraph; booster ``kind`` xgboost or lightgbm) on the aggregated
    features of ``spec``: the :class:`fraud.models.detector.Detector` protocol.
    ``booster`` is None until :meth:`fit` (or :meth:`load`)."""

    booster: object = None
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    kind: TreeKind = "lightgbm"
    hparams: dict = field(default_factory=dict)
    name: str = ""
    differentiable: ClassVar[bool] = False
    # the feature bank of the graph it was fitted on, to score that graph without rebuilding the features
    _fitted_on: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def untrained(cls, name: str, hparams: dict) -> TreeModel:
        """Tree detector ``name`` with hyperparameters ``hparams`` (GADBench's names), ready to :meth:`fit`."""
        return cls(None, feature_spec(hparams), "xgboost" if name == "xgbgraph" else "lightgbm", dict(hparams), name)

    def features(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        """(N, F) normalised features -> (N, D) the features the trees split on."""
        f = self._fitted_on
        if f is not None and f[0]() is x and f[1]() is g:
            return f[2].get(*astuple(self.spec))
        return aggregate_features(x, g, *astuple(self.spec))

    embed = features

    def fit(self, data: FitData, opts: FitOptions) -> FitOutcome:
        """Fit the booster on ``data`` (early stopping on validation AUPRC)."""
        feats = data.bank.get(*astuple(self.spec)).numpy()
        soft_y = data.soft_y
        self.booster, history, self.kind, rounds = fit_tree(
            self.name, feats, data.y.numpy(), data.train.numpy(), data.val.numpy(), self.hparams,
            patience=opts.patience, seed=opts.seed, sample_weight=data.weight.numpy(),
            soft_idx=data.soft_idx.numpy(), soft_y=None if soft_y is None else soft_y.numpy(),
            soft_w=data.soft_weight)
        self._fitted_on = (weakref.ref(data.x), weakref.ref(data.g), data.bank)
        return FitOutcome(history, rounds)

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) fraud probabilities."""
        if self.kind == "xgboost":
            import xgboost as xgb

            return self.booster.predict(xgb.DMatrix(feats))
        return self.booster.predict(feats)

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        return self.predict_features(self.features(x, g).numpy())

    @property
    def suffix(self) -> str:
        return ".xgb.json" if self.kind == "xgboost" else ".lgb.txt"

    def save(self, path: str) -> None:
        self.booster.save_model(path)

    @classmethod
    def load(cls, path: str, hparams: dict | int | None = None) -> TreeModel:
        """Load the booster at ``path`` (kind from its suffix); ``hparams``: the record's hyperparameters
        (an int is read as ``hops``, the old signature)."""
        hp = {"hops": hparams} if isinstance(hparams, int) else dict(hparams or {})
        spec = feature_spec(hp)
        if path.endswith(".xgb.json"):
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(path)
            return cls(booster, spec, "xgboost", hp, "xgbgraph")
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=path), spec, "lightgbm", hp, "rfgraph")


def _with_soft(feats: np.ndarray, y: np.ndarray, train: np.ndarray, w: np.ndarray, soft_idx: np.ndarray | None,
               soft_y: np.ndarray | None, soft_w: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows, labels (fractional for soft targets) and weights.

    The soft rows together weigh ``soft_w`` times the training rows' total weight, each the same: the
    networks' loss (:func:`fraud.fit_loop.weighted_loss`, a weighted mean over training rows plus
    ``soft_w`` x the mean over soft rows), so ``soft_weight`` means one thing for every family. (A
    per-row weight of ``soft_w``, as before, made the soft rows far lighter than in a network when training
    labels are many, as in the full setting, and heavier when they are few.)"""
    X, Y, W = feats[train], y[train].astype(np.float64), np.asarray(w, np.float64)
    if soft_idx is not None and len(soft_idx) and soft_w > 0:
        X = np.concatenate([X, feats[soft_idx]])
        Y = np.concatenate([Y, soft_y])
        W = np.concatenate([W, np.full(len(soft_idx), soft_w * float(W.sum()) / len(soft_idx))])
    return X, Y, W


def fit_xgbgraph(feats: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, *, seed: int,
                 sample_weight: np.ndarray, soft_idx: np.ndarray | None = None, soft_y: np.ndarray | None = None,
                 soft_w: float = 0.0, n_estimators: int = 100, eta: float = 0.3, reg_lambda: float = 1.0,
                 subsample: float = 1.0, max_depth: int = 6, patience: int = 30,
                 num_threads: int = 0) -> tuple[object, list[dict]]:
    """XGBoost (binary:logistic, so labels in [0,1] are allowed) with early stopping on validation AUPRC.

    ``sample_weight`` (len(train),) already holds class weights x node weights. Returns (booster cut to
    its best round, history of validation AUPRC per round)."""
    import xgboost as xgb

    X, Y, W = _with_soft(feats, y, train, sample_weight, soft_idx, soft_y, soft_w)
    params = {"objective": "binary:logistic", "eval_metric": "aucpr", "eta": eta, "lambda": reg_lambda,
              "subsample": subsample, "max_depth": max_depth, "tree_method": "hist", "seed": seed,
              "nthread": num_threads or torch.get_num_threads(), "verbosity": 0}
    dtrain = xgb.DMatrix(X, Y, weight=W)
    dval = xgb.DMatrix(feats[val], y[val].astype(np.float64))
    record: dict = {}
    booster = xgb.train(params, dtrain, num_boost_round=int(n_estimators), evals=[(dval, "val")],
                        early_stopping_rounds=int(patience), evals_result=record, verbose_eval=False)
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    booster = booster[: best + 1]
    history = [{"round": i + 1, "val_auprc": float(v)} for i, v in enumerate(record["val"]["aucpr"])]
    return booster, history


def fit_rfgraph(feats: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, *, seed: int,
                sample_weight: np.ndarray, soft_idx: np.ndarray | None = None, soft_y: np.ndarray | None = None,
                soft_w: float = 0.0, n_estimators: int = 100, max_samples: float = 1.0,
                max_features: str | None = "sqrt", num_leaves: int = 512,
                num_threads: int = 0) -> tuple[object, list[dict]]:
    """A random forest (LightGBM ``boosting='rf'``, cross-entropy objective so soft labels are allowed) of
    ``n_estimators`` trees; see the module docstring for the mapping from GADBench's parameters."""
    import lightgbm as lgb

    X, Y, W = _with_soft(feats, y, train, sample_weight, soft_idx, soft_y, soft_w)
    d = feats.shape[1]
    share = {"sqrt": math.sqrt(d) / d, "log2": math.log2(max(d, 2)) / d, None: 1.0}[max_features]
    params = {"boosting": "rf", "objective": "cross_entropy", "metric": "average_precision",
              "bagging_fraction": 1.0 - math.exp(-float(max_samples)), "bagging_freq": 1,
              "feature_fraction_bynode": min(1.0, max(share, 1.0 / d)), "num_leaves": int(num_leaves),
              "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 1e-6, "lambda_l2": 0.0, "seed": seed,
              "deterministic": True, "verbosity": -1, "num_threads": num_threads or torch.get_num_threads()}
    dtrain = lgb.Dataset(X, Y, weight=W)
    dval = lgb.Dataset(feats[val], y[val].astype(np.float64), reference=dtrain)
    record: dict = {}
    booster = lgb.train(params, dtrain, num_boost_round=int(n_estimators), valid_sets=[dval], valid_names=["val"],
                        callbacks=[lgb.record_evaluation(record)])
    ap = record.get("val", {}).get("average_precision", [])
    return booster, [{"round": i + 1, "val_auprc": float(v)} for i, v in enumerate(ap)]


def fit_tree(name: str, feats: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, hp: dict, *,
             patience: int, **common) -> tuple[object, list[dict], TreeKind, int]:
    """Fit tree detector ``name`` with hyperparameters ``hp`` (GADBench's names); returns (booster, history,
    kind, rounds kept). ``common``: seed, sample_weight and the soft-target arrays of the fit functions."""
    if name == "xgbgraph":
        booster, history = fit_xgbgraph(feats, y, train, val, n_estimators=int(hp["n_estimators"]),
                                        eta=float(hp["eta"]), reg_lambda=float(hp["lambda"]),
                                        subsample=float(hp["subsample"]), patience=patience, **common)
        return booster, history, "xgboost", int(booster.num_boosted_rounds())
    if name == "rfgraph":
        booster, history = fit_rfgraph(feats, y, train, val, n_estimators=int(hp["n_estimators"]),
                                       max_samples=float(hp["max_samples"]), max_features=hp["max_features"], **common)
        return booster, history, "lightgbm", len(history)
    raise ValueError(f"{name} is not a tree detector")
