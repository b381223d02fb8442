"""SQLAlchemy 2 ORM tables. Schema changes go through Alembic (``finllm/store/migrations``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Run(Base):
    """One job: a mining run, a fraud training/scoring run, a report build, an LLM session."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # factor_mine, fraud_train, fraud_score, ...
    name: Mapped[str] = mapped_column(String(200), default="")
    # Optional caller key (e.g. "factor_pipeline/2024-01-02"); re-saving the same key replaces the run.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|finished|failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    artifacts: Mapped[dict] = mapped_column(JSON, default=dict)  # name -> path
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # LLM narrative (grounded)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the process running it: a `running` run whose process is gone is marked failed on the next start
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Factor(Base):
    """The factor library: one row per distinct canonical expression."""

    __tablename__ = "factors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    expr_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hash of canonical postfix tokens
    tokens: Mapped[list] = mapped_column(JSON)  # canonical postfix token list
    formula: Mapped[str] = mapped_column(Text)  # readable infix with Qlib names
    source: Mapped[str] = mapped_column(String(16))  # rl | gp | llm | human | handcrafted
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)  # {"train": {...}, "valid": {...}, "test": {...}}
    explanation: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PoolMember(Base):
    """A factor's combination weight inside the pool a run produced."""

    __tablename__ = "pool_members"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    factor_id: Mapped[str] = mapped_column(ForeignKey("factors.id", ondelete="CASCADE"), primary_key=True)
    weight: Mapped[float] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer, default=0)


class FactorDailyMetric(Base):
    """Monitoring: a stored factor's IC on one date (rolling decay checks read these)."""

    __tablename__ = "factor_daily_metrics"
    factor_id: Mapped[str] = mapped_column(ForeignKey("factors.id", ondelete="CASCADE"), primary_key=True)
    date: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO date
    ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    rolling_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    decayed: Mapped[bool] = mapped_column(Boolean, default=False)


class FraudModel(Base):
    """A trained fraud detector: where its weights are, its threshold, normalisation and config."""

    __tablename__ = "fraud_models"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), nullable=True)
    name: Mapped[str] = mapped_column(String(64))  # model family: sage, gat, bwgnn, rgcn, xgbgraph
    dataset: Mapped[str] = mapped_column(Text)
    threshold: Mapped[float] = mapped_column(Float)
    normalization: Mapped[dict] = mapped_column(JSON, default=dict)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alert(Base):
    """A scored node from `fraud score`; unique per (model, batch, node) so re-runs replace."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("model_id", "batch", "node", name="uq_alert_model_batch_node"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("fraud_models.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), nullable=True)
    batch: Mapped[str] = mapped_column(String(64), default="")  # e.g. logical date
    node: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    explanation: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMCall(Base):
    """Usage record for every LLM request the gateway makes (cache hits recorded with cached=True)."""

    __tablename__ = "llm_calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    template_id: Mapped[str] = mapped_column(String(100))
    template_version: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(200))
    cache_key: Mapped[str] = mapped_column(String(64))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    # ok, or the LLMFailure kind: timeout | connection | http | invalid | budget | template | server | internal
    status: Mapped[str] = mapped_column(String(32))
    # HTTP requests actually sent (0 for cache hits and budget refusals); per-run budgets resume from
    # SUM(attempts) of the run's non-cached rows.
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMCache(Base):
    """Validated LLM responses keyed by (model, template id+version, prompt hash, sampling params)."""

    __tablename__ = "llm_cache"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    template_id: Mapped[str] = mapped_column(String(100))
    template_version: Mapped[str] = mapped_column(String(20))
    response: Mapped[str] = mapped_column(Text)  # validated JSON text
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
