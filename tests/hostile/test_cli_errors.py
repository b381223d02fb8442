"""One error path for the CLI: user-caused failures exit 2 with one line naming the flag/URL/file,
internal failures exit 1 with one line and the log path; never a traceback, nothing written on refusal."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from finllm.cli.common import friendly_errors, log_path
from finllm.cli.main import app

runner = CliRunner()


def _one_line_error(r, code: int, *needles: str) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr
    for n in needles:
        assert n in err, err
    return err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_database_urls(tmp_path, monkeypatch):
    (tmp_path / "dir").mkdir()
    (tmp_path / "corrupt.db").write_bytes(b"this is not an SQLite file" * 100)
    out = tmp_path / "r.html"
    cases = {
        "notaurl": "is not a database URL",
        "sqlite://": "in-memory",
        f"sqlite:///{tmp_path / 'dir'}": "is a directory",
        f"sqlite:///{tmp_path / 'corrupt.db'}": "cannot open database",
        f"postgresql+psycopg://u:hunter2@127.0.0.1:{_closed_port()}/db": "cannot open database",
        "mysql://u@h/db": "unsupported database",
    }
    for url, needle in cases.items():
        monkeypatch.setenv("FINLLM_DATABASE_URL", url)
        err = _one_line_error(runner.invoke(app, ["report", "r1", "--out", str(out)]), 2,
                              "FINLLM_DATABASE_URL", needle)
        assert "hunter2" not in err  # the password is never shown
    monkeypatch.delenv("FINLLM_DATABASE_URL")
    _one_line_error(runner.invoke(app, ["report", "r1", "--db", "notaurl", "--out", str(out)]), 2,
                    "--db", "'notaurl'")
    assert not out.exists()


def test_out_paths_are_refused_before_writing(tmp_path):
    d = tmp_path / "a_dir"
    d.mkdir()
    _one_line_error(runner.invoke(app, ["report", "r1", "--out", str(d)]), 2, "--out", "is a directory")
    assert list(tmp_path.iterdir()) == [d] and not list(d.iterdir())  # no a_dir.tmp left behind
    missing = tmp_path / "no" / "such" / "r.html"
    _one_line_error(runner.invoke(app, ["report", "r1", "--out", str(missing)]), 2, "does not exist")
    assert not (tmp_path / "no").exists()  # folders are never created on a typo
    g = tmp_path / "g.npz"
    np.savez(g, node_features=np.ones((4, 2)), node_labels=np.array([0, 1, 0, 1]), edges=np.array([[0, 1]]))
    for out, needle in ((d, "is a directory"), (missing, "does not exist")):
        _one_line_error(runner.invoke(app, ["fraud", "score", "--model", "m", "--data", str(g), "--out", str(out)]),
                        2, needle)
    assert not (tmp_path / "no").exists()


def test_batch_is_a_name_not_a_path(tmp_path, monkeypatch):
    from finllm.config import load_settings
    from finllm.errors import UsageError
    from finllm.store import open_store
    from fraud.score import score_graph

    g = tmp_path / "g.npz"
    np.savez(g, node_features=np.ones((4, 2)), node_labels=np.array([0, 1, 0, 1]), edges=np.array([[0, 1]]))
    home = load_settings().home
    store = open_store()
    for batch in ("../../../../out/escaped", "a/b", "..", ".hidden", "-rf", "x" * 65, "a\nb"):
        with pytest.raises(UsageError, match="batch"):
            score_graph("m", g, store, batch)
        r = runner.invoke(app, ["fraud", "score", "--model", "m", "--data", str(g), "--batch", batch])
        _one_line_error(r, 2, "batch")
    assert not (home / "alerts").exists() and not (tmp_path / "out").exists()
    store.dispose()


@pytest.mark.parametrize("args,needles", [
    (["factors", "mine", "--ops", ""], ("--ops", "empty")),
    (["factors", "mine", "--seed", str(10**20)], ("--seed", "4294967295")),
    (["factors", "mine", "--max-factors", "-3"], ("--max-factors -3", "at least 1")),
    (["factors", "mine", "--cost-bps", "inf"], ("--cost-bps", "finite")),
    (["factors", "mine", "--minutes", "inf"], ("--minutes", "finite")),
    (["factors", "mine", "--out", "/dev/null"], ("--out", "not a folder")),
    (["factors", "eval", "Mean($close, 5)", "--cost-bps", "inf"], ("--cost-bps", "finite")),
    (["factors", "eval", "Mean($close, 5)", "--delay", "100000"], ("--delay 100000", "252")),
])
def test_nonsense_flags(args, needles):
    _one_line_error(runner.invoke(app, args), 2, *needles)


def test_mining_a_one_ticker_panel(tmp_path, us_small):
    import polars as pl

    p = tmp_path / "one.parquet"
    us_small.filter(pl.col("ticker") == us_small["ticker"][0]).write_parquet(p)
    r = runner.invoke(app, ["factors", "mine", "--data", str(p), "--minutes", "0.01", "--no-store",
                            "--out", str(tmp_path / "o")])
    _one_line_error(r, 2, "one.parquet", "1 ticker(s)")


@pytest.mark.parametrize("url,needle", [("http://[::1/v1", "not a valid URL"), ("ftp://h/v1", "http(s)"),
                                        ("http://127.0.0.1:99999/v1", "not a valid URL")])
def test_bad_llm_endpoint_url(monkeypatch, url, needle):
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", url)
    _one_line_error(runner.invoke(app, ["llm", "check"]), 2, "FINLLM_LLM_BASE_URL", needle)


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    """A scripted endpoint (the real server cannot do this): every request gets a 200 HTML login page."""

    def _page(self) -> None:
        body = b"<html><body>Please log in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._page()

    do_GET = _page

    def log_message(self, *args) -> None:
        pass


def test_html_200_reply_is_an_http_failure(monkeypatch):
    srv = http.server.HTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FINLLM_LLM_BASE_URL", f"http://127.0.0.1:{srv.server_port}/v1")
        r = runner.invoke(app, ["llm", "check", "--json"])
    finally:
        srv.shutdown()
        srv.server_close()
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and out["failure"] == "http" and "not a chat completion" in out["message"]
    assert "Traceback" not in r.stderr and "internal" not in r.stderr


def test_truncated_rl_checkpoint_hints_fresh(tmp_path):
    from factors.rl.train import _Checkpointer
    from finllm.errors import DataError

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    ck = _Checkpointer(folder, 60.0, {"a": 1})
    (folder / "model.zip").write_bytes(b"PK\x03\x04 truncated")
    (folder / "state.json").write_text('{"meta": {"a": 1}, "elapsed_s": 3.0, "epis')
    with pytest.raises(DataError, match="--fresh") as err:
        ck.load_state()
    assert "state.json" in str(err.value)
    state = {"meta": {"a": 1}, "elapsed_s": 3.0, "episodes": 4, "pool": {"members": []}}
    with pytest.raises(DataError, match="--fresh") as err:
        ck.restore(state, None, lambda tokens: tokens)
    assert "model.zip" in str(err.value)


def test_internal_error_is_one_line_with_the_log(tmp_path):
    mini = typer.Typer()

    @mini.command()
    @friendly_errors
    def boom() -> None:
        warnings.warn("overflow encountered in reduce", RuntimeWarning, stacklevel=1)
        raise ZeroDivisionError("division by zero\nsecond line")

    @mini.command()
    @friendly_errors
    def other() -> None:
        raise IsADirectoryError(21, "Is a directory", str(tmp_path))

    r = runner.invoke(mini, ["boom"])
    err = _one_line_error(r, 1, "internal error: ZeroDivisionError: division by zero", str(log_path()))
    assert "RuntimeWarning" not in r.stderr and "second line" not in err
    log = Path(log_path()).read_text()
    assert "Traceback" in log and "ZeroDivisionError" in log and "RuntimeWarning: overflow" in log
    _one_line_error(runner.invoke(mini, ["other"]), 2, str(tmp_path), "is a directory")


@pytest.mark.parametrize("args, needles", [
    (["data", "info", "--bogus", "x.parquet"], ["No such option: --bogus", "finllm data info"]),
    (["fraud", "train", "--data", "g.npz", "--seeds", "0"], ["--seeds", "finllm fraud train"]),
    (["data", "info"], ["Missing argument"]),
    (["no-such-command"], ["No such command"]),
])
def test_click_usage_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    """The console script (``finllm.cli.main:main``) turns click's own usage errors into one line, exit 2
    (click's standalone mode prints a boxed usage text instead)."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "finllm"  # the installed console script
    r = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, r.stderr
    for n in needles:
        assert n in err, err
