"""Shared fixtures. Service fixtures (PostgreSQL, the local LLM server) start once per session."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"

# Fixture modules: each owned by one area, imported here so every test can use them.
for _name in ["tests.fixtures_pg", "tests.fixtures_llm"]:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise
        continue
    globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("_")})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'finllm.db'}"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own FINLLM_HOME (database, artifacts) so tests never share state."""
    monkeypatch.setenv("FINLLM_HOME", str(tmp_path / "finllm_home"))
    monkeypatch.delenv("FINLLM_DATABASE_URL", raising=False)
