"""Mine a factor pool end to end: load the panel, split by dates, mine (RL or GP), score the pool on
every split, write ``result.json`` and return the result (recording the run and the pool in the store is
the use case :func:`finllm.app.mine.mine_and_record`).

Data flow, and where look-ahead is ruled out:

* The miner sees only the **training panel**: the train dates plus ``warmup_days`` trading days
  before them (rolling windows need history; those days carry no target). The target is the
  ``horizon``-day forward return computed on that panel, so the last ``horizon`` train days, whose
  returns would reach into the validation period, have no target (purged).
* The finished pool is re-evaluated on one panel covering all splits plus the history its members need
  (:func:`factors.expr.needed_history`, at least ``warmup_days``; windows see the history before a split,
  never after); each member is z-scored per day over the universe and combined with the
  weights fit on train, or, after train, weights re-fitted walk-forward on realised days only
  (``combiner``: :mod:`factors.combiner`, chosen on valid by default). Metrics per split skip the split's
  last ``horizon`` days (purge).
* Long-short backtest: top-minus-bottom quintile, traded one day after the signal, re-formed every
  ``rebalance`` days, ``cost_bps`` per unit of traded notional (:mod:`factors.backtest`).

Speed: during the search the pool's statistics (z-scores, ICs, mutual ICs, weights) use every
``pool_day_stride``-th train day (:mod:`factors.pool`); the finished pool is scored on every day.

Budget: ``minutes`` bounds the search (RL training or GP evolution); loading and the final scoring
come on top (a few seconds to a minute on the S&P 500 panel).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from factors.scoring import SplitScorer, warm_start
from factors.splits import US_SPLITS  # noqa: F401  (re-exported: bench/bench_mining.py and older callers)
from factors.units import scale_free_share
from finllm.errors import ConfigError, DataError
from finllm.jsonsafe import json_safe

if TYPE_CHECKING:
    from factors.evaluate import Evaluator
    from factors.expr import Expr
    from factors.panel import Panel
    from factors.pool import AlphaPool
    from factors.rl.builder import Vocab
    from factors.rl.scorer import PoolScorer
    from factors.splits import Split

# Libraries a pool can be seeded from without a store (MineConfig.seed_library).
BUILTIN_LIBRARIES = ("alpha158",)
# Operators left out of the miners' vocabulary by default: on the full US panel their kernels cost
# 1.5-6x a rolling Mean at window 20 (Med ~6x, Skew/Kurt ~5x) and far more at long windows; keeping
# them out keeps episodes/s high for a fixed time budget. ``ops="all"`` puts them back.
SLOW_OPS = ("Med", "Mad", "Skew", "Kurt", "Rank", "IdxMax", "IdxMin", "CSRank", "Slope")
MINER_CONSTS = ("-1", "-0.5", "0.01", "0.5", "1", "2", "5")
MINER_WINDOWS = ("5", "10", "20", "40")


@dataclass
class MineConfig:
    data: str
    train: str
    valid: str
    test: str
    method: str = "rl"
    minutes: float = 5.0
    pool_size: int = 20
    seed: int = 0
    horizon: int = 20
    cost_bps: float = 10.0
    rebalance: int | None = None  # backtest holding period in days; None: the target's horizon
    max_tickers: int | None = None
    ops: str = "fast"  # "fast" (all but SLOW_OPS), "all", or a comma list of operator names
    reward: str = "objective"  # RL reward: "objective" (pool IC after the attempt) or "gain"
    max_mutual_ic: float = 0.9
    pool_day_stride: int = 4  # pool statistics on every k-th train day (factors.pool: "Speed")
    # > 0: the last this share of train days is an inner validation window (purged by the horizon) that a
    # factor must not hurt to enter the pool; weights are then fit on the days before it (factors.pool)
    admit_valid_frac: float = 0.0
    max_len: int = 20
    warmup_days: int = 126  # history before train for the miner; scoring a known pool uses at least what it needs
    max_episodes: int | None = None  # stop after this many factors (tests, repeatable runs)
    # offer these factors to each search's empty pool first: a library source of the store ("all" = every source),
    # or the built-in Alpha158-style set ("alpha158", BUILTIN_LIBRARIES); the seeding counts against ``minutes``
    seed_library: str | None = None
    threads: int = 1  # torch threads: small LSTM batches slow down badly with more threads on a busy CPU
    # independent searches sharing the budget, their pools averaged (0 = auto: one per 1.5 minutes of budget,
    # 1 to 6, factors.restarts.auto_restarts); see factors.restarts for why
    restarts: int = 0
    # processes running the restarts side by side (factors.restarts.search_restarts); ``minutes`` stays the wall
    # budget, so with the auto rule each process runs as many searches of the same length as a 1-job run would
    jobs: int = 1
    # how the members are combined out of sample: "auto" (train weights or a walk-forward re-fit, chosen on
    # valid), "fitted", or one re-fit (factors.combiner)
    combiner: str = "auto"
    # operators the search may not give a constant argument (comma list; "" = AlphaGen's grammar): the
    # parser still reads them, e.g. a library factor, but RL and GP do not write ``Less(5, $close)``
    const_free: str = ""
    # > 0: each search fits its pool on train days re-weighted by a Bayesian bootstrap over blocks of this many
    # days (drawn from the search's seed), so the averaged restarts are bagged (factors.restarts.bag_weights)
    bag_days: int = 0
    # what a factor must raise to enter the pool: "ic" (the combination's mean daily IC, AlphaGen) or "icir"
    pool_objective: str = "ic"
    # True: only scale-free factors may enter the pool (factors.units: a factor whose ranking changes with a stock's
    # price scale, such as ``$close`` or ``Add($high, 2)``, is refused before evaluation; RL pays it as invalid)
    scale_free: bool = False
    # what the pool's IC is measured against on train: "return" (the forward return, AlphaGen) or "rank" (its
    # cross-sectional percentile rank per day: the pool then fits the ordering the RankIC scores, and a few
    # extreme returns no longer dominate a day's correlation)
    pool_target: str = "return"
    # > 0: train days weigh 2 ** (-age / recency_halflife) in the pool's fit and admission (age in trading days
    # before the last train day), so factors that worked lately count more; 0 = every day alike (AlphaGen)
    recency_halflife: int = 0
    # the rolling windows (trading days) the search may write: AlphaGen's 5-40 by default
    windows: str = ",".join(MINER_WINDOWS)
    pool_l2: float = 1e-3  # ridge on the pool's weight fit (Sigma + l2 I)^-1 r; Sigma is a correlation matrix
    rl: dict[str, Any] = field(default_factory=dict)  # RLConfig overrides
    gp: dict[str, Any] = field(default_factory=dict)  # GPConfig overrides

    def __post_init__(self) -> None:
        if self.rebalance is None:  # hold the book for the target's horizon (daily turns an h-day signal to costs)
            self.rebalance = self.horizon

    def validate(self) -> None:
        if self.method not in ("rl", "gp"):
            raise ConfigError(f"--method {self.method!r}: choose rl or gp")
        if not (self.minutes > 0 or self.max_episodes):
            raise ConfigError("--minutes must be > 0")
        if self.pool_size < 1:
            raise ConfigError("--pool-size must be >= 1")
        if self.horizon < 1:
            raise ConfigError("--horizon must be >= 1")
        if self.pool_day_stride < 1:
            raise ConfigError("pool_day_stride must be >= 1")
        if self.rebalance is None:  # set to None after construction
            self.rebalance = self.horizon
        if self.rebalance < 1:
            raise ConfigError("--rebalance must be >= 1 (days between portfolio re-formations)")
        if not 0.0 <= self.admit_valid_frac < 0.5:
            raise ConfigError(f"admit_valid_frac {self.admit_valid_frac}: choose 0 (off) or a share below 0.5")
        if self.reward not in ("objective", "gain"):
            raise ConfigError(f"reward {self.reward!r}: choose objective or gain")
        from factors.combiner import check_combiner

        check_combiner(self.combiner)
        self.const_free_ops()
        self.window_tokens()
        if self.bag_days < 0:
            raise ConfigError(f"--bag-days {self.bag_days}: choose 0 (off) or a block length in days >= 1")
        if not (0.0 <= self.pool_l2 < float("inf")):
            raise ConfigError(f"pool_l2 {self.pool_l2}: choose a ridge strength >= 0")
        if self.recency_halflife < 0:
            raise ConfigError(f"--recency-halflife {self.recency_halflife}: choose 0 (off) or a half-life in days >= 1")
        if self.pool_target not in ("return", "rank"):
            raise ConfigError(f"--pool-target {self.pool_target!r}: choose return or rank")
        if self.pool_objective not in ("ic", "icir"):
            raise ConfigError(f"--pool-objective {self.pool_objective!r}: choose ic or icir")
        if not 1 <= self.jobs <= 64:
            raise ConfigError(f"--jobs {self.jobs}: choose a process count from 1 to 64")
        if self.restarts < 0:
            raise ConfigError(f"--restarts {self.restarts}: choose 0 (auto) or a count >= 1")
        if self.rl:
            self._check_rl()
        if self.max_episodes and self.n_restarts() > self.max_episodes:
            raise ConfigError(f"--restarts {self.n_restarts()} with --max-factors {self.max_episodes}: each restart "
                              "needs at least one factor")

    def _check_rl(self) -> None:
        """ConfigError for an ``rl`` override that RLConfig does not have, or a risk quantile outside (0, 1)."""
        from dataclasses import fields

        from factors.rl.train import RLConfig

        known = {f.name for f in fields(RLConfig)}
        bad = sorted(set(self.rl) - known)
        if bad:
            raise ConfigError(f"rl settings {', '.join(bad)}: unknown (known: {', '.join(sorted(known))})")
        q = self.rl.get("risk_quantile", 0.0)
        if not isinstance(q, (int, float)) or not (q == 0 or 0 < q < 1):
            raise ConfigError(f"rl.risk_quantile {q!r}: choose 0 (off) or a quantile level in (0, 1)")

    def const_free_ops(self) -> list[str]:
        """The operators of ``const_free``; ConfigError naming an unknown one."""
        from factors.ops import OPS

        names = [s.strip() for s in self.const_free.split(",") if s.strip()]
        bad = [n for n in names if n not in OPS]
        if bad:
            raise ConfigError(f"--const-free: unknown operator(s) {', '.join(bad)} (known: {', '.join(OPS)})")
        return names

    def window_tokens(self) -> tuple[str, ...]:
        """The windows of ``windows`` as vocabulary tokens; ConfigError naming a bad one."""
        from factors.ops import MAX_WINDOW

        items = [s.strip() for s in self.windows.split(",") if s.strip()]
        out: list[str] = []
        for s in items:
            if not (s.isascii() and s.isdigit()) or not 1 <= int(s) <= MAX_WINDOW:
                raise ConfigError(f"--windows {s!r}: choose whole numbers of days from 1 to {MAX_WINDOW}")
            if str(int(s)) not in out:
                out.append(str(int(s)))
        if not out:
            raise ConfigError("--windows: name at least one window, e.g. 5,10,20,40")
        return tuple(out)

    def n_restarts(self) -> int:
        """How many independent searches share the budget: ``restarts``, or when 0 the auto rule once per job
        (``jobs * auto_restarts(minutes)``)."""
        from factors.restarts import auto_restarts

        return self.restarts or self.jobs * auto_restarts(self.minutes)

    def run_config(self) -> dict[str, Any]:
        """Run.config as reports expect it (data, splits, horizon, method, seed, cost_bps, ...)."""
        d = asdict(self)
        d["splits"] = {"train": self.train, "valid": self.valid, "test": self.test}
        d["start"], d["end"] = None, None
        return d


def miner_ops(spec: str) -> dict[str, tuple[str, ...]]:
    from factors.ops import OPS

    if spec == "fast":
        names = [k for k in OPS if k not in SLOW_OPS]
    elif spec == "all":
        names = list(OPS)
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
        bad = [n for n in names if n not in OPS]
        if bad:
            raise ConfigError(f"--ops: unknown operator(s) {', '.join(bad)} (known: {', '.join(OPS)})")
    return {k: OPS[k].arg_kinds for k in names}


# ------------------------------------------------------------------------------------------------
# the training side
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainSide:
    evaluator: Evaluator
    pool: AlphaPool
    scorer: PoolScorer
    vocab: Vocab
    rows: slice
    n_days: int
    n_stocks: int


def build_train_side(panel: Panel, splits: list[Split], cfg: MineConfig) -> TrainSide:
    """Evaluator on the training panel, the empty pool on train days, the scorer and the vocabulary."""
    from factors.evaluate import Evaluator
    from factors.rl.builder import Vocab

    train = splits[0]
    p = panel.slice_dates(warm_start(panel.dates, train.start, cfg.warmup_days), train.end)
    first = 0 if train.start is None else int(np.searchsorted(p.dates, train.start, "left"))
    if len(p.dates) - first < cfg.horizon + 20:
        raise ConfigError(f"--train {train.text()}: only {len(p.dates) - first} days, need more than "
                          f"{cfg.horizon + 20} for a {cfg.horizon}-day target")
    ev = Evaluator(p, cache_bytes=768 << 20)
    rows = slice(first, None)
    y = ev.forward_return(cfg.horizon)[rows]
    mask = ev.universe[rows]
    if int((mask & torch.isfinite(y)).sum()) == 0:
        raise DataError(f"{cfg.data}: no (stock, day) in --train {train.text()} has a "
                        f"{cfg.horizon}-day forward return inside the universe")
    pool, scorer = _new_pool(ev, rows, cfg)
    ops = miner_ops(cfg.ops)
    vocab = Vocab.build(ev.features, ops, MINER_CONSTS, cfg.window_tokens(),
                        const_free=[o for o in cfg.const_free_ops() if o in ops])
    return TrainSide(ev, pool, scorer, vocab, rows, int(y.shape[0]), int(y.shape[1]))


def _new_pool(ev: Evaluator, rows: slice, cfg: MineConfig) -> tuple[AlphaPool, PoolScorer]:
    """An empty pool on the train rows' target and its scorer (the evaluator, and its cache, are shared)."""
    from factors.pool import AlphaPool
    from factors.restarts import bag_weights
    from factors.rl.scorer import PoolScorer

    y, mask = ev.forward_return(cfg.horizon)[rows], ev.universe[rows]
    if cfg.pool_target == "rank":
        from factors.ops import cs_rank

        y = cs_rank(y, mask & torch.isfinite(y), torch.float32)
    n = int(y.shape[0])
    weights = bag_weights(n, cfg.bag_days, cfg.seed) if cfg.bag_days else None
    if cfg.recency_halflife:
        recency = (0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float64) / cfg.recency_halflife)).astype(np.float32)
        weights = recency if weights is None else weights * recency
    pool = AlphaPool(y, mask, capacity=cfg.pool_size, max_mutual_ic=cfg.max_mutual_ic,
                     day_stride=cfg.pool_day_stride, valid_frac=cfg.admit_valid_frac,
                     valid_purge_days=cfg.horizon, objective=cfg.pool_objective, l2=cfg.pool_l2,
                     day_weights=weights)
    return pool, PoolScorer(ev, pool, rows, reward_mode=cfg.reward, max_len=cfg.max_len, scale_free=cfg.scale_free)


def fresh_side(side: TrainSide, cfg: MineConfig) -> TrainSide:
    """``side`` with an empty pool and a new scorer on the same evaluator (the next restart of a search)."""
    pool, scorer = _new_pool(side.evaluator, side.rows, cfg)
    return replace(side, pool=pool, scorer=scorer)


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


def load_for_mining(cfg: MineConfig) -> tuple[Panel, list[Split]]:
    from factors.panel import load_panel
    from factors.splits import AUTO, default_splits, parse_splits

    auto = [s == AUTO for s in (cfg.train, cfg.valid, cfg.test)]
    splits = [] if any(auto) else parse_splits(cfg.train, cfg.valid, cfg.test)
    if not all(auto) and len(splits) != 3:
        raise ConfigError("give all of --train, --valid and --test (START:END), or none of them: then the "
                          "shipped US file uses its documented split and other data is cut 60/20/20 by time")
    panel = load_panel(cfg.data, max_tickers=cfg.max_tickers)
    from factors.metrics import MIN_NAMES
    from finllm.errors import DataError

    if len(panel.tickers) < MIN_NAMES:  # every IC would be NaN: the search would have no signal at all
        raise DataError(f"{cfg.data}: {len(panel.tickers)} ticker(s); mining scores factors by cross-sectional "
                        f"IC, which needs at least {MIN_NAMES} tickers per day")
    if all(auto):  # the chosen ranges are written back, so the run's config records them
        splits = default_splits(panel.dates, cfg.data)
        cfg.train, cfg.valid, cfg.test = (sp.text() for sp in splits)
    return panel, splits


def _seed_from_library(side: TrainSide, library: Sequence[Sequence[str]]) -> int:
    """Offer library factors (postfix tokens) to the empty pool first; returns how many were admitted."""
    from finllm.errors import ExpressionError

    n = 0
    for tokens in library:
        try:
            expr = side.scorer.parse(list(tokens))
        except ExpressionError:
            continue  # a factor over fields this panel lacks, or longer than max_len
        if side.scorer.offer(expr).admitted:
            n += 1
    return n


class _Progress:
    """Rich progress bar on stderr: elapsed vs budget, factors tried, rate, pool IC and size."""

    def __init__(self, enabled: bool, label: str, budget_s: float, pool: AlphaPool) -> None:
        self.pool, self.budget_s, self.bar = pool, budget_s, None
        self.t0 = time.perf_counter()
        self.last = 0.0
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task(label, total=budget_s)
            self.label = label
            self.bar.start()

    def update(self, elapsed: float, done: int, what: str, rate: float | None = None) -> None:
        """``rate``: the miner's own count per wall second of search; default ``done`` / time since start."""
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9) if rate is None else rate
        self.bar.update(self.task, completed=min(elapsed, self.budget_s),
                        description=f"{self.label} {what} {done} ({rate:.1f}/s)  pool IC "
                                    f"{self.pool.objective:.4f}  size {len(self.pool.members)}/{self.pool.capacity}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (at least 1), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mine(cfg: MineConfig, out: str | Path, *, progress: bool = True, resume: bool = True, panel: Panel | None = None,
         splits: list[Split] | None = None, side: TrainSide | None = None, library: Sequence[Sequence[str]] = (),
         run_id: str | None = None) -> dict[str, Any]:
    """Run one mining job and write ``<out>/result.json``; nothing goes to the store (recording the run
    and its pool is the use case :func:`finllm.app.mine.mine_and_record`).

    ``side``: the training side already built on ``panel`` / ``splits``; ``library``: factors (postfix
    tokens) offered to the pool first; ``run_id``: written into the result."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        if panel is None or splits is None:
            panel, splits = load_for_mining(cfg)
        t_start = time.perf_counter()
        side = side or build_train_side(panel, splits, cfg)
        if not library and cfg.seed_library in BUILTIN_LIBRARIES:
            from factors.handcrafted import alpha158_library

            library = alpha158_library()
        if cfg.n_restarts() == 1:
            members, mining, best = search_once(cfg, side, out, resume, progress, library)
        else:
            from factors.restarts import search_restarts

            members, mining, best = search_restarts(cfg, side, panel, splits, out, resume, progress, library)
        mining["train_panel"] = {"days": side.n_days, "stocks": side.n_stocks}
        mining["scale_free_share"] = scale_free_share(members)
        members = readable(members, side.evaluator.features)
        side.evaluator.clear_cache()
        result = score_pool(members, panel, splits, cfg, best)
    result["mining"] = mining
    result["config"] = cfg.run_config()
    result["seconds_total"] = round(time.perf_counter() - t_start, 1)
    result["run_id"] = run_id
    (out / "result.json").write_text(json.dumps(json_safe(result), indent=2, default=str, allow_nan=False))
    return result


def search_once(cfg: MineConfig, side: TrainSide, out: Path, resume: bool, progress: bool,
                library: Sequence[Sequence[str]], label: str | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, Any], tuple[float, Expr | None]]:
    """One search (RL or GP) into ``side``'s pool: returns its members (:meth:`AlphaPool.describe`), the
    mining statistics and the best single factor it tried ``(train IC, expression)``."""
    t0 = time.perf_counter()
    seeded = _seed_from_library(side, library) if library else 0
    seed_s, kept = time.perf_counter() - t0, len(side.pool.members)
    if cfg.minutes > 0 and library:  # the same CPU budget as an unseeded search: seeding spends part of it
        cfg = replace(cfg, minutes=max(cfg.minutes - seed_s / 60.0, 1.0 / 60.0))
    bar = _Progress(progress, label or cfg.method.upper(), cfg.minutes * 60.0, side.pool)
    try:
        mining = _run_method(cfg, side, out, resume, bar)
    finally:
        bar.close()
    mining["seeded_from_library"] = seeded  # admissions while seeding (a later library factor may evict one)
    mining["seeded_kept"] = kept  # members when the search starts
    mining["seed_seconds"] = round(seed_s, 2)
    mining["scorer"] = side.scorer.stats()
    mining["train_objective"] = side.pool.objective
    return side.pool.describe(), mining, side.scorer.best_single


def _run_method(cfg: MineConfig, side: TrainSide, out: Path, resume: bool, bar: _Progress) -> dict[str, Any]:
    if cfg.method == "rl":
        from factors.rl.train import RLConfig, train_rl

        rlcfg = RLConfig(max_len=cfg.max_len, **cfg.rl)
        meta = {k: v for k, v in cfg.run_config().items() if k not in ("minutes", "max_episodes")}
        meta["rl"] = {k: v for k, v in cfg.rl.items() if k not in ("eval_workers", "checkpoint_s")}  # result-neutral

        def reload(tokens: list[str]) -> tuple[str, tuple[str, ...], str, torch.Tensor]:
            e = side.scorer.parse(tokens)
            return e.key, e.tokens, e.infix, side.scorer.values(e)

        return train_rl(side.vocab, side.scorer, minutes=cfg.minutes if cfg.minutes > 0 else 1e9, seed=cfg.seed, cfg=rlcfg, out=out,
                        resume=resume, max_episodes=cfg.max_episodes, meta=meta, reload_member=reload,
                        progress=lambda cb: bar.update(cb.elapsed, cb.episodes_this, "episodes", cb.rate))
    from factors.gp import GPConfig, run_gp

    gpcfg = GPConfig(max_len=cfg.max_len, **cfg.gp)
    return run_gp(side.vocab, side.scorer, minutes=cfg.minutes if cfg.minutes > 0 else 1e9, seed=cfg.seed,
                  cfg=gpcfg, max_evals=cfg.max_episodes,
                  progress=lambda s: bar.update(s["elapsed"], s["evals"], "factors"))


def readable(members: list[dict[str, Any]], features: Sequence[str]) -> list[dict[str, Any]]:
    """Pool members with their formulas simplified by exact identities (:mod:`factors.simplify`: the
    values are bit for bit the same, so every metric is too); a member that changed keeps its mined form as
    ``original_tokens`` / ``original_formula``."""
    from factors.simplify import simplify_tokens

    out = []
    for m in members:
        e = simplify_tokens(m["tokens"], features)
        if list(e.tokens) != list(m["tokens"]):
            m = {**m, "tokens": list(e.tokens), "formula": e.infix, "original_tokens": list(m["tokens"]),
                 "original_formula": m["formula"]}
        out.append(m)
    return out


def scoring_warmup(cfg: MineConfig, token_lists: Sequence[Sequence[str]]) -> int:
    """Trading days of history before the first split when scoring these factors: what they need
    (:func:`factors.splits.history_needed`), at least ``cfg.warmup_days``."""
    from factors.splits import history_needed

    return max(cfg.warmup_days, history_needed(token_lists))


def pool_scorer(members: list[dict[str, Any]], panel: Panel, splits: list[Split], cfg: MineConfig, *,
                extra: Sequence[Sequence[str]] = ()) -> SplitScorer:
    """The split scorer of a known pool: the run's horizon, costs and holding period, with the history its
    members (and ``extra`` token lists) need (:func:`scoring_warmup`), so every consumer of a pool's
    figures (the run's metrics, its tear sheet) scores exactly the same values."""
    known = [list(m["tokens"]) for m in members] + [list(t) for t in extra]
    return SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, scoring_warmup(cfg, known), cfg.rebalance)


def score_pool(members: list[dict[str, Any]], panel: Panel, splits: list[Split], cfg: MineConfig,
               best_single: tuple[float, Expr | None] = (0.0, None), scorer: SplitScorer | None = None) -> dict[str, Any]:
    """Metrics of the combined pool (members combined by ``cfg.combiner``: :func:`factors.combiner.pool_signal`;
    ``"combiner"`` records the choice) and of each member on every split (+ ``best_single``, the search's best
    single factor as ``(train IC, expression)``, when known)."""
    ic, best = best_single
    if scorer is None:
        extra = [list(best.tokens)] if best is not None else []
        scorer = pool_scorer(members, panel, splits, cfg, extra=extra)
    sc = scorer
    pool_out = []
    for m in members:
        pool_out.append({**m, "metrics": sc.member_metrics(m["tokens"])})
    metrics: dict[str, Any] = {}
    combiner: dict[str, Any] = {}
    if members:
        from factors.combiner import pool_signal

        x, combiner = pool_signal(sc, [(m["tokens"], m["weight"]) for m in members], cfg.combiner)
        metrics = sc.report(x)
    baselines: dict[str, Any] = {}
    if best is not None:
        from factors.simplify import simplify

        baselines["single_best"] = {"formula": simplify(best, sc.ev.features).infix, "train_ic_raw": ic,
                                    **sc.report(torch.sign(torch.tensor(ic)) * sc.ev.evaluate(best))}
    return {"pool": pool_out, "metrics": metrics, "combiner": combiner, "baselines": baselines}
