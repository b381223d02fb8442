"""`finllm fraud explain`: why a saved detector flags one node (features, neighbours, LLM rationale)."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors, plain, safe


def register(app: typer.Typer) -> None:
    @app.command("explain")
    @friendly_errors
    def explain(
        model: str = typer.Option(..., "--model", help="Saved fraud model id (from `finllm fraud train`)."),
        node: str = typer.Option(..., "--node", help="Node id as in the graph file (e.g. a user id), or its "
                                 "0-based index when no id matches."),
        data: Path | None = typer.Option(None, "--data", help="Graph file; default: the model's training graph."),
        nodes_csv: Path | None = typer.Option(None, "--nodes", help="Node table CSV for an edge-list CSV."),
        llm: bool = typer.Option(True, "--llm/--no-llm", help="Ask the LLM for a rationale (one call through "
                                 "the gateway; the embedded 135M model unless FINLLM_LLM_BASE_URL is set)."),
        top: int = typer.Option(5, "--top", min=1, help="How many features and neighbours to list."),
        max_neighbors: int = typer.Option(30, "--max-neighbors", min=1, help="Neighbours tested by occlusion."),
        as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON on stdout."),
    ) -> None:
        """Explain why a saved detector scores a node as it does, from the detector's own evidence.

        Prints the decision (score, threshold, flagged or not, rank), then an explanation written by code from the features that push the score (gradient x input; occlusion for xgbgraph) and the neighbours whose links change it most (occlusion: each link removed in turn). With --llm, the LLM may add phrasings (kept only when every number comes from the evidence and they state no verdict of their own), and its verdict is shown beside its measured reliability, as a disagreement when it contradicts the detector. --json carries score, threshold, flagged, the evidence and the text.
        """  # noqa: E501
        from finllm.errors import DataError
        from finllm.store import open_store
        from fraud.artifacts import load_model
        from fraud.datasets import load_graph
        from fraud.supervisor.explain import explain_node, explanation_text

        store = open_store()
        loaded = load_model(model, store)
        from finllm.store.paths import resolve_stored  # an older model's relative data path

        path = data or resolve_stored(loaded.config.get("data") or loaded.dataset)
        ds = load_graph(path, **({"nodes": nodes_csv} if nodes_csv else {}))
        ids = {nid: i for i, nid in enumerate(ds.node_ids)} if ds.node_ids else {}
        if node in ids:
            index = ids[node]
        elif node.isdigit() and int(node) < ds.num_nodes:
            index = int(node)
        else:
            raise DataError(f"{path}: no node {node!r} (ids or indices 0..{ds.num_nodes - 1})")
        gateway = None
        if llm:
            from finllm.llm import get_gateway

            gateway = get_gateway(run_id=None, store=store)
        with console.status(f"explaining node {plain(node)} ..."):
            e = explain_node(loaded, ds, index, gateway=gateway, top=top, max_neighbors=max_neighbors)
        e["summary"] = explanation_text(e)
        if as_json:
            emit_json(e)
            return
        flag = "FLAGGED" if e["flagged"] else "not flagged"
        typer.echo(plain(f"node {e['node']} (index {index}) - {flag}: score {e['score']:.4f}, threshold "
                         f"{e['threshold']:.4f}, rank {e['rank']} of {e['nodes']}"))
        typer.echo("explanation (from the detector's evidence; every number inserted by code):")
        for s in e["explanation"]["sentences"]:
            typer.echo(plain(f"  {'[LLM phrasing] ' if s['source'] == 'llm' else ''}{s['text']}"))
        typer.echo("features driving the score (+ raises, - lowers; relative to the population mean):")
        for f in e["features"]:
            typer.echo(plain(f"  {f['feature']:<32} value {f['value']:<12.4g} {f['attribution']:+.4f} ({f['method']})"))
        typer.echo("neighbours whose link changes the score most (occlusion, change in logit):")
        for n in e["neighbors"] or []:
            lab = {1: "fraud", 0: "normal"}.get(n["label"], "unlabelled")
            typer.echo(plain(f"  {n['node']:<12} score {n['score']:.3f} ({lab})  contribution {n['contribution']:+.4f}"))
        if not e["neighbors"]:
            typer.echo("  (no neighbours)")
        if "llm" in e:
            v = e["llm"]
            if "error" in v:
                typer.echo(plain(f"LLM verdict unavailable: {v['error']}"))
            else:
                head = "LLM DISAGREES with the detector" if v["shown_as"] == "disagreement" else "LLM verdict"
                typer.echo(plain(f"{head}: {v['note']} (p={v['fraud_probability']:.2f}, "
                                 f"confidence {v['confidence']:.2f})"))
                from fraud.supervisor.verdict import readable

                if readable(v["rationale"]):
                    typer.echo(plain(f"  its own words (not checked): {v['rationale']}"))
