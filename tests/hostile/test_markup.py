"""Text from data is never rich markup and never terminal control codes on the way out."""

from __future__ import annotations

import numpy as np
import polars as pl
from rich.console import Console
from typer.testing import CliRunner

from finllm.cli.common import plain, safe
from finllm.cli.main import app

runner = CliRunner()
EVIL = {"bold": "[/bold]EVIL", "osc": "\x1b]0;pwned\x07\x1b[31mRED", "link": "[link=file:///etc/passwd]X[/link]"}


def test_safe_and_plain():
    c = Console(record=True, width=200, force_terminal=False)
    c.print(f"[green]ok[/] {safe(EVIL['bold'])} {safe(EVIL['link'])} {safe(EVIL['osc'])}")
    text = c.export_text()
    assert "[/bold]EVIL" in text and "[link=file:///etc/passwd]X[/link]" in text
    assert "\x1b" not in text and "\x07" not in text and "RED" in text
    assert plain("a\x1b[2Jb\u202ec\td\n") == "abc\td\n"  # the whole CSI sequence goes
    assert plain("x\x1b]8;;http://e\x1b\\y\x07z") == "xyz"  # OSC to ST, then a lone BEL


def test_data_validate_with_hostile_tickers(tmp_path, us_small):
    tickers = sorted(us_small["ticker"].unique())[:3]
    df = us_small.with_columns(pl.col("ticker").replace(dict(zip(tickers, EVIL.values()))))
    # a repair on an evil ticker's row, so that its name is printed in the findings table
    row = int(df["ticker"].eq(EVIL["bold"]).arg_max())
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.col("low") * 0.5).otherwise(pl.col("high"))
                         .alias("high"))
    p = tmp_path / "[bold red]evil.parquet"
    df.write_parquet(p)
    for cmd in ("validate", "info"):
        r = runner.invoke(app, ["data", cmd, str(p)])
        assert r.exit_code == 0, (r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert "\x1b" not in out and "\x07" not in out
        assert "[bold red]evil.parquet" in " ".join(out.split()).replace("\n", "")
    r = runner.invoke(app, ["data", "validate", str(p)])
    assert "[/bold]EVIL" in r.stdout  # the finding names the ticker as written


def test_graph_named_like_markup(tmp_path):
    p = tmp_path / "[bold]g[x.npz"
    np.savez(p, node_features=np.ones((4, 2)), node_labels=np.array([0, 1, 0, 1]), edges=np.array([[0, 1]]))
    r = runner.invoke(app, ["data", "info", str(p)])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "[bold]g[x" in r.stdout
