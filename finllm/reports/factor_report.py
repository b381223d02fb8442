"""Sections of a factor-mining report, read from the run's facts and its stored tear sheet.

Nothing here computes a metric: tables come from :func:`finllm.reports.facts.build_facts` (the run's stored
metrics, with the tear sheet's figures merged in) and figures from the tear-sheet artifact written by
:func:`factors.tearsheet.tearsheet` (``Run.artifacts["tearsheet"]``). A run without one gets a note;
:func:`finllm.app.report.build_report` computes and stores it before rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finllm.errors import DataError
from finllm.reports import plots
from finllm.reports import tearsheet_plots as tp
from finllm.reports.facts import SPLITS
from finllm.reports.tables import fig, split_table, table

if TYPE_CHECKING:
    from finllm.store import Run

FACTOR_TABLE = ("ic", "rank_ic", "icir", "rank_icir", "ic_t_nw", "sharpe", "ann_return", "max_drawdown", "turnover",
                "excess_ann_return", "excess_ir", "excess_ann_return_gross", "excess_max_drawdown", "rank_autocorr")
FACTOR_HEADLINE = ("ic", "rank_ic", "icir", "sharpe", "ann_return", "max_drawdown", "excess_ann_return")
POOL = "pool (combined)"
MEMBER_FIGURES = (("icir", "ICIR", "ratio"), ("sharpe", "Sharpe", "ratio"), ("ann_return", "ann. return", "pct"),
                  ("turnover", "turnover", "pct"))


def load_sheet(run: Run) -> dict[str, Any] | None:
    """The run's stored tear sheet (JSON + daily series) or None when it has none."""
    path = (run.artifacts or {}).get("tearsheet")
    if not path:
        return None
    from factors.tearsheet import load_tearsheet
    from finllm.store.paths import resolve_stored

    p = resolve_stored(path)
    if not p.is_file():
        return None
    try:
        return load_tearsheet(p)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{p}: not a readable tear sheet ({exc})") from exc


def _models(facts: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {POOL: facts["pool_metrics"], **facts["baselines"]}


def _pool_table(facts: dict[str, Any], sheet: dict[str, Any] | None) -> dict[str, Any]:
    figures = {m["rank"]: m.get("figures", {}).get("test", {}) for m in (sheet or {}).get("members", [])}
    rows = []
    for m in facts["pool"]:
        free = m.get("scale_free")
        row = [m["rank"], m["formula"], m["weight"], m["source"], None if free is None else "yes" if free else "no"]
        for split in SPLITS:
            blk = m["metrics"].get(split, {})
            row += [blk.get("ic"), blk.get("rank_ic")]
        if figures:
            row += [figures.get(m["rank"], {}).get(k) for k, _, _ in MEMBER_FIGURES]
        rows.append(row)
    extra = [(f"test {lab}", kind) for _, lab, kind in MEMBER_FIGURES] if figures else []
    return table(["#", "formula", "weight", "source", "scale-free"]
                 + [f"{s} {m}" for s in SPLITS for m in ("IC", "RankIC")]
                 + [c for c, _ in extra], rows, empty="this run saved no pool", formula_cols=(1,), id="pool-table",
                 kinds=["count", None, "weight", None, None] + ["ic"] * 6 + [k for _, k in extra])


def _per_model_table(sheet: dict[str, Any], key: str, split: str, labels: list[str], kind: str,
                     tid: str, caption: str | None = None) -> dict[str, Any]:
    rows = []
    for name, m in sheet["models"].items():
        vals = m["splits"].get(split, {}).get(key)
        if isinstance(vals, dict):
            vals = [vals.get(k) for k in labels]
        rows.append([POOL if name == "pool" else name, *(vals or [None] * len(labels))])
    return table(["model", *labels], rows, id=tid, kinds=[None] + [kind] * len(labels), caption=caption)


def factor_sections(facts: dict[str, Any], run: Run) -> tuple[list[dict], list[str], dict]:
    """(sections, notes, headline table) of a factor_mine run."""
    notes: list[str] = []
    named = _models(facts)
    headline = split_table({n: {s: b for s, b in per.items() if s == "test"} for n, per in named.items()},
                           FACTOR_HEADLINE, only=True, id="headline-table")
    try:
        sheet = load_sheet(run)
    except DataError as exc:
        sheet = None
        notes.append(str(exc))
    sections: list[dict[str, Any]] = [{
        "title": f"Factor pool ({facts['pool_size']} factors)", "table": _pool_table(facts, sheet),
        "intro": "Each factor's formula, its weight in the pool's linear combination (fitted on train), whether "
                 "it is scale-free (its ranking does not change with a stock's price scale; \"no\": it ranks "
                 "stocks partly by price level, which a split or the data's first row sets) and its "
                 "daily cross-sectional IC and RankIC with the forward return, averaged per period; the test "
                 "columns after them: the factor alone, signed as the pool uses it, as a long-short book."}]
    figs_cmp = []
    for metric in ("ic", "rank_ic", "sharpe"):
        tbl = {n: {s: np.nan if blk.get(metric) is None else float(blk[metric]) for s, blk in per.items()}
               for n, per in named.items()}
        if len(named) > 1 and any(np.isfinite(v) for per in tbl.values() for v in per.values()):
            figs_cmp.append(fig(f"{metric} vs baselines", plots.metric_bars(tbl, metric, f"{metric}: pool vs baselines"),
                                f"Mean {metric} of the pool's combination and of each baseline, per period."))
    sections.append({"title": "Pool vs baselines (same run, same splits)",
                     "table": split_table(named, FACTOR_TABLE, id="comparison-table"), "figures": figs_cmp,
                     "intro": "Baselines fitted in this run on the same splits: Alpha158-style linear (ridge on train) "
                              "and LightGBM on the same features (trained on train, stopped early on valid); "
                              "single_best = the miner's best single factor. Long-short = top minus bottom quintile, "
                              "traded the day after the signal and held for the run's holding period, net of costs; "
                              "excess = top-quintile book (after its costs) minus the equal-weight market.",
                     "missing": None if len(named) > 1 else "This run recorded no baselines."})
    if sheet is None:
        notes.append("time-series plots not available: this run has no tear sheet (Run.artifacts['tearsheet']); "
                     "`finllm report` computes and stores it")
        return sections, notes, headline
    notes.extend(sheet.get("notes", []))
    sections.extend(_sheet_sections(sheet, facts))
    return sections, notes, headline


def _sheet_sections(sheet: dict[str, Any], facts: dict[str, Any]) -> list[dict[str, Any]]:
    s = sheet["series"]
    dates = s["dates"]
    split_of = np.asarray(["", *SPLITS], dtype=object)[s["split"]]
    models = list(sheet["models"])
    h, lag, cost = sheet["horizon"], sheet["rebalance"], sheet["cost_bps"]
    out: list[dict[str, Any]] = []
    perf = [
        fig("Cumulative long-short", tp.cumulative_models(
            dates, split_of, {m: s[f"{m}__ls_net"] for m in models}, s["pool__ls_gross"], cost, lag,
            "Long-short book (top minus bottom quintile), cumulative", "cumulative return"),
            "Daily long-short returns summed over time, per period (each period's book starts on its first day), "
            "net of costs for every model and before costs for the pool; background = train / valid / test."),
        fig("Drawdown", tp.drawdowns(dates, split_of, {m: s[f"{m}__drawdown"] for m in models}),
            "Fall of the long-short book's summed net returns below their running peak, restarted per period."),
        fig("Excess return over the market", tp.cumulative_models(
            dates, split_of, {m: s[f"{m}__excess"] for m in models}, None, cost, lag,
            "Top quintile minus the equal-weight market, cumulative", "cumulative excess return"),
            "Daily return of the top-quintile book after its trading costs minus the equal-weight return of every "
            "name with a factor value, summed over time."),
        fig("IC over time", plots.ic_over_time(dates, s["pool__ic"], s["pool__rank_ic"], split_of),
            f"Daily IC/RankIC of the pool's combination with the {h}-day forward return (faint) and their 20-day "
            "means."),
    ]
    out.append({"title": "Performance over time", "figures": perf})
    dist = sheet["ic_distribution"]
    figs = []
    if dist.get("splits"):
        figs.append(fig("IC distribution", tp.ic_histogram(dist["bins"], {k: v["counts"] for k, v in dist["splits"].items()},
                                                           dist["splits"]),
                        "Histogram of the pool's daily IC per period (test filled)."))
        figs.append(fig("IC QQ", tp.ic_qq({k: (v["qq_normal"], v["qq_ic"]) for k, v in dist["splits"].items()}),
                        "Quantiles of the daily IC against a normal distribution's; points off the line = fat tails."))
    mon = sheet["monthly_ic"]
    if mon["months"]:
        figs.append(fig("Monthly IC", tp.monthly_heatmap(mon["months"], mon["ic"], "Monthly mean IC of the pool"),
                        "Mean daily IC of the pool per calendar month (rows = years)."))
    rows = [[k, v["mean"], v["std"], v["skew"], v["kurtosis"]] for k, v in dist.get("splits", {}).items()]
    out.append({"title": "IC distribution", "figures": figs,
                "table": table(["period", "mean IC", "IC std", "skew", "excess kurtosis"], rows, id="ic-dist-table",
                               kinds=[None, "ic", "ic", "ratio", "ratio"])})
    q = sheet["quantiles"]
    qlabels = [f"Q{k + 1}" for k in range(q)]
    qfigs = [fig("Quantile returns", plots.quantile_returns(
                {sp: v["quantile_returns"] for sp, v in sheet["models"]["pool"]["splits"].items()}),
                 f"Mean {h}-day forward return per quantile of the pool's combination, per period."),
             fig("Quantile cumulative returns", tp.quantile_cumulative(dates, split_of, s["pool__quantile_returns"]),
                 f"Each quantile's equal-weight book, held {lag} days, before costs, summed over time."),
             fig("Turnover over time", tp.turnover_over_time(dates, split_of, s["pool__quantile_turnover"], lag),
                 f"Share of the top and bottom quantiles' names replaced after {lag} days, 20-day mean (pool)."),
             fig("Quantile turnover", tp.quantile_turnover(
                 {m: sheet["models"][m]["splits"].get("test", {}).get("quantile_turnover", []) for m in models}, lag,
                 "test"), f"Share of each quantile's names replaced after {lag} days (the holding period), test split.")]
    out.append({"title": "Quantiles", "figures": qfigs, "tables": [
        _per_model_table(sheet, "quantile_returns", "test", qlabels, "bps", "quantile-returns-table",
                         f"Mean {h}-day forward return per quantile, test split"),
        _per_model_table(sheet, "quantile_turnover", "test", qlabels, "pct", "quantile-turnover-table",
                         f"Share of names replaced after {lag} days per quantile, test split")],
        "intro": f"Tables: test split; mean {h}-day forward return per quantile, and the share of names replaced "
                 f"after {lag} days."})
    hs = [str(x) for x in sheet["decay_horizons"]]
    pfigs = [fig("Rank autocorrelation", tp.rank_autocorr(dates, split_of, {m: s[f"{m}__rank_autocorr"] for m in models},
                                                          lag),
                 f"Spearman correlation of each factor's cross-sectional ranks with its ranks {lag} days before; "
                 "high = a stable book and low turnover."),
             fig("IC decay", tp.ic_decay({m: sheet["models"][m]["splits"].get("test", {}).get("ic_decay", {})
                                          for m in models}, h, "test"),
                 "Mean daily IC against the forward return of each horizon, test split.")]
    out.append({"title": "Signal persistence and decay", "figures": pfigs,
                "table": _per_model_table(sheet, "ic_decay", "test", hs, "ic", "ic-decay-table",
                                          "Mean IC against the h-day forward return, test split (columns = h)"),
                "intro": "Table: mean IC on the test split against the h-day forward return (columns = h days)."})
    corr, members = sheet.get("member_corr"), sheet.get("members", [])
    if corr is not None and len(members) > 1:
        out.append({"title": "Factor correlation", "figures": [fig(
            "Factor correlation", plots.correlation_heatmap(np.asarray(corr, dtype=float),
                                                            [str(m["rank"]) for m in members]),
            "Mean daily cross-sectional correlation between pool factors over the valid period (labels = pool "
            "table row numbers).")]})
    fits = [[m, v["fit"].get("fit"), v["fit"].get("features"), _after_train(v["fit"]), v["fit"].get("best_iteration"),
             v["fit"].get("seconds")] for m, v in sheet["models"].items() if v.get("fit")]
    out.append({"title": "How the pool and the baselines were fitted", "table": table(
        ["model", "fit", "features", "after train", "LightGBM rounds", "seconds"], fits, id="fit-table",
        empty="Baselines were not fitted for this run.", kinds=[None, None, "count", None, "count", "auto"]),
        "intro": "After train: the weights used on valid and test days: the train fit, or re-fitted every day on "
                 "the last N days whose returns are known (refitN), chosen on valid RankIC (auto)."})
    return out


def _after_train(fit: dict[str, Any]) -> str | None:
    """How a linear model's weights were used after train (its combiner record), e.g. "refit250 (auto)"."""
    comb = fit.get("combiner")
    if not isinstance(comb, dict):
        return "trained once" if fit.get("best_iteration") is not None else None
    chosen, asked = str(comb.get("chosen")), str(comb.get("requested"))
    return chosen if chosen == asked else f"{chosen} ({asked})"
