"""`finllm llm ...`: run the embedded model server, check the configured endpoint, list templates."""

from __future__ import annotations

import typer

from finllm.cli.common import console, emit_json, friendly_errors, plain

app = typer.Typer(
    help=("The LLM gateway. Default: an embedded llama.cpp server with SmolLM2-135M-Instruct (offline, "
          "135M-model quality). Point at a stronger OpenAI-compatible endpoint with FINLLM_LLM_BASE_URL, "
          "FINLLM_LLM_MODEL and OPENAI_API_KEY."),
    no_args_is_help=True,
)


@app.command()
@friendly_errors
def serve(
    port: int = typer.Option(None, help="Port on 127.0.0.1 (default: FINLLM_LLM_PORT, 8765)."),
    n_ctx: int = typer.Option(2048, help="Context window in tokens."),
    threads: int = typer.Option(None, help="CPU threads for inference (default: half the cores, at most 4)."),
) -> None:
    """Run the embedded local model server in the foreground (Ctrl-C stops it).

    While it runs, every finllm command reuses it instead of starting its own.
    """
    import time
    from pathlib import Path

    from finllm.config import load_settings
    from finllm.llm.server import LocalServer, served_models

    settings = load_settings()
    port = port or settings.llm_port
    if served_models(f"http://127.0.0.1:{port}/v1") is not None:
        console.print(f"a server already answers on 127.0.0.1:{port}; nothing to do")
        return
    srv = LocalServer(port=port, model_alias=settings.llm_model, n_ctx=n_ctx, n_threads=threads,
                      log_path=Path(settings.home) / "logs" / "llm_server.log")
    with console.status(f"starting {settings.llm_model} on 127.0.0.1:{port} ..."):
        srv.start()
    console.print(f"serving {settings.llm_model} at {srv.base_url} (log: {srv.log_path}); Ctrl-C to stop")
    try:
        while srv.proc is not None and srv.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


@app.command()
@friendly_errors
def check(
    headline: str = typer.Option("Acme Corp shares jump 20% after record quarterly profits",
                                 help="Text to classify (sent as untrusted data)."),
    use_cache: bool = typer.Option(False, "--cache/--no-cache", help="Allow a cached answer."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Send one structured request to the configured endpoint; print the parsed object and latency.

    An endpoint that is down, a server that cannot start or a model the endpoint does not serve ends at once
    with exit code 2 and one line naming FINLLM_LLM_BASE_URL / FINLLM_LLM_MODEL; a bad answer exits 1.
    """
    from typing import Literal

    from pydantic import BaseModel, Field

    from finllm.config import load_settings
    from finllm.llm import get_gateway
    from finllm.llm.client import describe

    class Sentiment(BaseModel):
        sentiment: Literal["positive", "negative", "neutral"]
        confidence: float = Field(ge=0.0, le=1.0)

    import time

    from finllm.cli.llm_wait import ensure_llm, waiting

    settings = load_settings()
    gw = get_gateway(settings=settings)
    t0 = time.perf_counter()
    ensure_llm(gw)  # down / not starting / wrong model: one line naming the settings, exit 2
    connect_s = time.perf_counter() - t0
    with waiting(f"asking {settings.llm_model}"):
        res = gw.structured("check", {"headline": headline}, Sentiment, max_tokens=64, use_cache=use_cache)
    out = {**describe(settings), "template": res.template, "ok": bool(res), "attempts": res.attempts,
           "connect_s": round(connect_s, 3), "latency_s": round(res.latency_s, 3), "usage": res.usage}
    if res:
        out.update(value=res.value.model_dump(), cached=res.cached)
    else:
        out.update(failure=res.kind, message=res.message)
    if json_out:
        emit_json(out)
    else:
        where = out["base_url"]
        if res:
            typer.echo(f"{res.value.model_dump_json()}")
            typer.echo(f"model {out['model']} at {where}: {res.latency_s:.2f}s, {res.attempts} call(s), "
                       f"{sum(res.usage.values())} tokens{' (cached)' if res.cached else ''}")
        else:
            typer.echo(plain(f"FAILED ({res.kind}): {res.message}"), err=True)
    if not res:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def templates(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the prompt templates and their versions (finllm/llm/templates/<id>.v<N>.j2)."""
    from finllm.llm import list_templates

    found = list_templates()
    if json_out:
        emit_json(found)
    else:
        for tid, versions in found.items():
            typer.echo(f"{tid}: {', '.join(f'v{v}' for v in versions)}")
