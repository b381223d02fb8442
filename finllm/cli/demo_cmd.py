"""`finllm demo`: the whole platform in one command, on the shipped data.

1. mines a synergistic factor pool on the S&P 500 panel (RL, a few minutes),
2. trains the fraud detector on the Amazon graph with the LLM supervisor (embedded local LLM),
3. scores the graph into alerts and explains the top ones,
4. writes both HTML reports (plots + grounded LLM narrative),
then prints where everything is and a three-line summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from finllm.cli.common import console, emit_json, friendly_errors

if TYPE_CHECKING:
    from finllm.store.db import Store

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
MARKET = "market/us_sp500_daily.parquet"
GRAPH = "fraud/amazon_upu.mat"

# (full, quick) settings. Quick is for smoke tests and a first look: a slice of tickers and years.
MINE = {
    False: {"train": "2003-01-01:2014-12-31", "valid": "2015-01-01:2016-12-31", "test": "2017-01-01:2021-04-21",
            "max_tickers": None, "pool_size": 10},
    True: {"train": "2016-01-01:2018-12-31", "valid": "2019-01-01:2019-12-31", "test": "2020-01-01:2021-04-21",
           "max_tickers": 30, "pool_size": 5},
}
# The embedded 135M model answers one request at a time (seconds each on a laptop CPU): the demo keeps
# the supervisor's budget small (enough verdicts to calibrate trust); the benchmarks use larger ones.
# --quick makes no supervisor calls: a budget below the 12 calibration verdicts the supervisor needs before
# it uses any (fraud/supervisor) only costs time (2 calls were 4-5 minutes of a quick demo on a loaded
# 2-core VM, and were then discarded); the top alert's explanation still uses the LLM.
MINUTES = {False: 3.0, True: 0.5}  # default mining budget (minutes), full and quick
FRAUD = {False: {"setting": "semi", "seeds": 2, "epochs": 100, "llm_budget": 12, "explain_top": 3, "model": "auto",
                 "auto": {"budget_s": 60.0}},
         True: {"setting": "semi", "seeds": 1, "epochs": 10, "llm_budget": 0, "explain_top": 1, "model": "auto",
                "auto": {"budget_s": 15.0, "trials": 1}}}


def _data_file(rel: str) -> Path:
    """The shipped file: ./data/<rel> when run from a clone's root, else the package's repository."""
    local = Path("data") / rel
    return local if local.is_file() else REPO_DATA / rel


def _stage(i: int, n: int, text: str) -> None:
    console.rule(f"[bold]{i}/{n}[/] {text}", align="left")


def publish(run_id: str, store: Store, out: Path, narrative: bool) -> dict[str, Any]:
    """Narrative (if wanted and missing) + HTML report of one run; a failed narrative never fails it."""
    from finllm.app.report import build_report

    with console.status("writing the report (and the LLM narrative from the run's facts) ..."):
        return build_report(store, run_id, out, narrative=narrative)


def _fmt(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @friendly_errors
    def demo(
        minutes: float = typer.Option(None, "--minutes", min=0.05, show_default=False,
                                      help="Search budget of the factor mining step, in minutes (default 3; 0.5 with "
                                           "--quick). The whole demo takes a few minutes more: loading, fraud "
                                           "training with the LLM, reports."),
        out: Path = typer.Option(Path("finllm_demo"), "--out", help="Folder for the reports, alerts and run files."),
        quick: bool = typer.Option(False, "--quick", help="The short form: a small slice (30 tickers, 2016-2021, "
                                                          "30 s of mining; 1 seed, 10 epochs, no LLM supervisor, "
                                                          "one LLM explanation; no report narratives unless "
                                                          "--narrative)."),
        method: str = typer.Option("rl", "--method", help="Miner: rl (MaskablePPO over postfix tokens) or gp."),
        narrative: bool = typer.Option(None, "--narrative/--no-narrative", show_default=False,
                                       help="LLM narratives in the reports (numbers checked against the facts). "
                                            "Default: on, off with --quick (the two narratives are most of a "
                                            "quick demo's LLM time on a CPU)."),
        seed: int = typer.Option(0, "--seed", help="Seed of mining and training."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document (paths and figures) on stdout."),
    ) -> None:
        """Run the platform end to end on the shipped data and write two reports.

        Mines a factor pool on the S&P 500 panel, trains the GNN fraud detector on the Amazon graph with the LLM supervisor in the loop (the local SmolLM2 model unless FINLLM_LLM_BASE_URL points elsewhere), scores the graph into explained alerts, writes an HTML report for each run and prints where they are.

        Everything is stored in the finllm database (FINLLM_DATABASE_URL; default sqlite in FINLLM_HOME, ./.finllm).
        """  # noqa: E501
        from finllm.errors import ConfigError

        if method not in ("rl", "gp"):
            raise ConfigError(f"--method {method!r}: choose rl or gp")
        from factors.mine import MineConfig
        from finllm.app.explain import explain_top_alerts
        from finllm.app.mine import mine_and_record
        from finllm.app.score_graph import score_batch
        from finllm.app.train_detector import TrainOptions, train_and_record
        from finllm.store import open_store

        t0 = time.perf_counter()
        minutes = MINUTES[quick] if minutes is None else minutes
        narrative = not quick if narrative is None else narrative
        out.mkdir(parents=True, exist_ok=True)
        store = open_store()
        market, graph = _data_file(MARKET), _data_file(GRAPH)
        m, f = MINE[quick], FRAUD[quick]
        tag = "quick" if quick else "full"

        _stage(1, 4, f"mining a factor pool ({method.upper()}, {minutes:g} min) on {market.name}")
        cfg = MineConfig(data=str(market), train=m["train"], valid=m["valid"], test=m["test"], method=method,
                         minutes=minutes, pool_size=m["pool_size"], seed=seed, max_tickers=m["max_tickers"])
        mined = mine_and_record(cfg, out / "mine", store, progress=True, resume=False,
                                idempotency_key=f"demo/{tag}/mine/{method}/{seed}", tearsheet_baselines=not quick)
        secs = {"mining": time.perf_counter() - t0}

        _stage(2, 4, f"training the fraud detector{' with the LLM supervisor' if f['llm_budget'] else ''} on "
                     f"{graph.name}")
        t1 = time.perf_counter()
        opts = TrainOptions(model=f["model"], auto=f["auto"], setting=f["setting"], seeds=f["seeds"],
                            epochs=f["epochs"], llm_budget=f["llm_budget"],
                            supervisor="llm" if f["llm_budget"] else "none")
        trained = train_and_record(graph, opts, store, idempotency_key=f"demo/{tag}/train/{seed}",
                                   progress=True).brief()
        secs["fraud_training"] = time.perf_counter() - t1

        _stage(3, 4, "scoring the graph into alerts and explaining the top ones")
        t1 = time.perf_counter()
        with console.status("scoring every node ..."):
            scored = score_batch(graph, batch="demo", model_id=trained["model_id"], store=store)
        with console.status(f"LLM: explaining the top {f['explain_top']} alerts ..."):
            explained = explain_top_alerts(trained["model_id"], batch="demo", data=str(graph), top=f["explain_top"],
                                           store=store)

        secs["scoring_and_explaining"] = time.perf_counter() - t1
        _stage(4, 4, "writing the reports")
        t1 = time.perf_counter()
        reports = {"factors": publish(mined["run_id"], store, out / "factor_report.html", narrative),
                   "fraud": publish(trained["run_id"], store, out / "fraud_report.html", narrative)}

        secs["reports"] = time.perf_counter() - t1
        secs["total"] = time.perf_counter() - t0
        test = mined["metrics"].get("test", {})
        base = (mined.get("baselines") or {}).get("single_best", {}).get("test", {})
        ft = trained.get("test", {})
        fb = trained.get("baseline_test", {})
        lines = [
            f"factors: {len(mined['pool'])}-factor {method.upper()} pool, test IC {_fmt(test.get('ic'))} / RankIC "
            f"{_fmt(test.get('rank_ic'))} (best single factor: IC {_fmt(base.get('ic'))}), "
            f"long-short Sharpe {_fmt(test.get('sharpe'), 2)} after costs",
            (f"fraud: {trained['model']} + LLM supervisor ({trained['setting']} labels, supervisor "
             f"{'/'.join(sorted(set(trained['supervisor_status']))) or 'off'})" if f["llm_budget"] else
             f"fraud: {trained['model']} ({trained['setting']} labels; no LLM supervisor with --quick)")
            + f", test AUROC {_fmt(ft.get('auroc'))} / "
            f"AUPRC {_fmt(ft.get('auprc'))}"
            + (f" (same seeds without it: AUROC {_fmt(fb.get('auroc'))} / AUPRC {_fmt(fb.get('auprc'))})" if fb else "")
            + f"; {scored['above_threshold']} alerts above threshold, {explained['explained']} explained",
            f"reports: {reports['factors']['path']} and {reports['fraud']['path']} ({secs['total']:.0f} s in all)",
        ]
        result = {"mine_run_id": mined["run_id"], "train_run_id": trained["run_id"], "model_id": trained["model_id"],
                  "reports": reports, "alerts": scored, "explained": explained, "summary": lines,
                  "seconds": {k: round(v, 1) for k, v in secs.items()},
                  "database": store.url}
        if as_json:
            emit_json(result)
            return
        console.rule("[bold]done")
        typer.echo(f"factor report: {reports['factors']['path']}")
        typer.echo(f"fraud report:  {reports['fraud']['path']}")
        typer.echo(f"database:      {store.url}")
        typer.echo("")
        for line in lines:
            typer.echo(line)
