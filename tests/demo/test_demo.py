"""`finllm demo --quick` end to end, as a new user runs it (a subprocess, its own FINLLM_HOME), against the
real embedded LLM server. Budget: <= 120 s on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FINLLM = [sys.executable, "-m", "finllm.cli.main"]


def _env(tmp_path: Path, llm_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINLLM_")}
    env["FINLLM_HOME"] = str(tmp_path / "home")
    if llm_url:
        env["FINLLM_LLM_BASE_URL"] = llm_url
    return env


def test_demo_quick_writes_both_reports(tmp_path: Path, local_llm: str) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run([*FINLLM, "demo", "--quick", "--minutes", "0.2", "--out", str(out), "--json"],
                          env=_env(tmp_path, local_llm), cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)  # a hang guard, not a speed check: a loaded 2-core host takes minutes
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    for kind in ("factors", "fraud"):
        path = Path(res["reports"][kind]["path"])
        assert path.is_file() and path.parent == out.resolve()
        html = path.read_text()
        assert "<img" in html and len(html) > 20_000, f"{kind} report has no plots"
    assert len(res["summary"]) == 3
    assert res["summary"][0].startswith("factors:") and "test IC" in res["summary"][0]
    assert res["summary"][1].startswith("fraud:") and "AUROC" in res["summary"][1]
    assert res["alerts"]["alerts_saved"] > 0 and res["explained"]["explained"] >= 1

    from finllm.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'home' / 'finllm.db'}")
    kinds = {r.kind for r in store.latest_runs(limit=50)}
    assert {"factor_mine", "fraud_train", "fraud_score"} <= kinds
    assert store.pool(res["mine_run_id"]), "the mined pool is in the store"
    assert [a for a in store.alerts(res["model_id"], "demo") if a.explanation], "explained alerts are stored"


def test_demo_bad_option_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([*FINLLM, "demo", "--quick", "--method", "magic", "--out", str(tmp_path / "d")],
                          env=_env(tmp_path, None), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "magic" in proc.stderr and "rl" in proc.stderr


def test_demo_help_explains() -> None:
    proc = subprocess.run([*FINLLM, "demo", "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    for word in ("--minutes", "--quick", "--out", "--json", "supervisor"):
        assert word in proc.stdout
