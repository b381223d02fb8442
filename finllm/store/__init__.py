"""Storage: SQLAlchemy 2 over SQLite (default) or PostgreSQL (by URL), migrated with Alembic."""

from finllm.store.db import Store, open_store
from finllm.store.tables import Alert, Factor, FactorDailyMetric, FraudModel, LLMCache, LLMCall, PoolMember, Run

__all__ = [
    "Store", "open_store", "Run", "Factor", "PoolMember", "FactorDailyMetric", "FraudModel", "Alert",
    "LLMCall", "LLMCache",
]
