"""Read-only queries behind ``finllm runs``, ``finllm models`` and ``finllm factors list|show``.

Listings are newest first. Ids may be given as a unique prefix (at least 4 characters), as users copy
them from tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute

from finllm.errors import FinllmError
from finllm.store.db import Store
from finllm.store.tables import Base, Factor, FactorDailyMetric, FraudModel, PoolMember, Run

MIN_PREFIX = 4


class NotFound(FinllmError):
    """No row (or more than one) matches the id a user gave; the message says which command lists them."""


@dataclass(frozen=True)
class RunFilter:
    kind: str | None = None
    status: str | None = None
    limit: int = 20


def find_id(store: Store, table: type[Base], ident: str, what: str, hint: str) -> str:
    """The full id of the ``table`` row whose id is ``ident`` or starts with it (unique prefix)."""
    col: InstrumentedAttribute = table.id  # type: ignore[attr-defined]
    ident = (ident or "").strip()
    with store.session() as s:
        if ident and s.get(table, ident) is not None:
            return ident
        if len(ident) >= MIN_PREFIX:
            hits = list(s.scalars(select(col).where(col.startswith(ident, autoescape=True)).limit(3)))
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise NotFound(f"{what} id {ident!r} is ambiguous ({', '.join(hits[:2])}, ...): give more characters")
    raise NotFound(f"no {what} {ident!r} in the store {store.url} ({hint} lists them)")


def runs(store: Store, flt: RunFilter) -> list[Run]:
    """Runs newest first, filtered by kind and status."""
    q = select(Run).order_by(Run.started_at.desc(), Run.id).limit(flt.limit)
    if flt.kind:
        q = q.where(Run.kind == flt.kind)
    if flt.status:
        q = q.where(Run.status == flt.status)
    with store.session() as s:
        return list(s.scalars(q))


def run_kinds(store: Store) -> list[str]:
    with store.session() as s:
        return sorted(s.scalars(select(Run.kind).distinct()))


def models(store: Store, name: str | None = None, run_id: str | None = None, limit: int = 20) -> list[FraudModel]:
    """Trained fraud detectors newest first, optionally of one family (``name``) or one training run."""
    q = select(FraudModel).order_by(FraudModel.created_at.desc(), FraudModel.id).limit(limit)
    if name:
        q = q.where(FraudModel.name == name)
    if run_id:
        q = q.where(FraudModel.run_id == run_id)
    with store.session() as s:
        return list(s.scalars(q))


def latest_model(store: Store, datasets: set[str]) -> FraudModel | None:
    """The newest stored model whose ``dataset`` is one of ``datasets`` (names a graph file may go by)."""
    with store.session() as s:
        return s.scalar(select(FraudModel).where(FraudModel.dataset.in_(datasets))
                        .order_by(FraudModel.created_at.desc()).limit(1))


def factors(store: Store, source: str | None = None, run_id: str | None = None, limit: int = 20) -> list[Factor]:
    """Library factors newest first; ``run_id``: the members of that run's pool (in pool order)."""
    if run_id:
        q = (select(Factor).join(PoolMember, PoolMember.factor_id == Factor.id)
             .where(PoolMember.run_id == run_id).order_by(PoolMember.position))
    else:
        q = select(Factor).order_by(Factor.created_at.desc(), Factor.id)
    if source:
        q = q.where(Factor.source == source)
    with store.session() as s:
        return list(s.scalars(q.limit(limit)))


def factor_pools(store: Store, factor_id: str) -> list[tuple[str, float]]:
    """(run id, weight) of every stored pool the factor is a member of, newest run first."""
    q = (select(PoolMember.run_id, PoolMember.weight).join(Run, Run.id == PoolMember.run_id)
         .where(PoolMember.factor_id == factor_id).order_by(Run.started_at.desc()))
    with store.session() as s:
        return [(r, float(w)) for r, w in s.execute(q)]


def factor_monitoring(store: Store, factor_id: str) -> dict[str, object]:
    """The factor's monitored days: count, first and last date, and the newest row's rolling IC / decay flag."""
    with store.session() as s:
        n, first, last = s.execute(select(func.count(), func.min(FactorDailyMetric.date),
                                          func.max(FactorDailyMetric.date))
                                   .where(FactorDailyMetric.factor_id == factor_id)).one()
        row = s.get(FactorDailyMetric, (factor_id, last)) if last else None
        return {"days": int(n), "first_date": first, "last_date": last,
                "rolling_ic": None if row is None else row.rolling_ic,
                "decayed": None if row is None else bool(row.decayed)}
