"""The layer rules of issue 18: core never imports the engines; engines never import the application
layer, the CLI or the reports (import-linter contracts in pyproject.toml); DAG files import only the
application layer's entry points (an AST check: ``airflow_dags`` is not a package)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("finllm", "factors", "fraud")
DAG_ENTRY_POINTS = ("finllm.app", "finllm.airflow_support")  # use cases, and Airflow glue (params, report path)


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed in this environment (requirements.lock pins it)"
    res = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "2 kept" in res.stdout


def dag_violations(source: str) -> list[str]:
    """First-party imports of a DAG file that are not application entry points."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            if name.split(".")[0] in FIRST_PARTY and not any(name == p or name.startswith(p + ".")
                                                              for p in DAG_ENTRY_POINTS):
                bad.append(f"line {node.lineno}: {name}")
    return bad


def test_dag_checker_catches_engine_imports() -> None:
    src = "def t():\n    from fraud.jobs import train_job\n    import factors.mine\n    from finllm.app.mine import x\n"
    assert dag_violations(src) == ["line 2: fraud.jobs", "line 3: factors.mine"]


@pytest.mark.parametrize("dag", sorted((REPO / "airflow_dags").glob("*.py")), ids=lambda p: p.name)
def test_dags_import_only_entry_points(dag: Path) -> None:
    assert dag_violations(dag.read_text()) == []
