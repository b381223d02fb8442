"""Engine, sessions, migrations and the small repository API every job writes through.

Every write happens in one transaction (``Store.session()``): a job killed mid-write leaves no
half-written rows. Saving the same factor (same canonical tokens) or the same run idempotency key
again updates the existing row instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from finllm.config import Settings, load_settings
from finllm.errors import ConfigError
from finllm.jsonsafe import json_safe
from finllm.store.paths import absolute_paths
from finllm.store.tables import Alert, Factor, FraudModel, PoolMember, Run, new_id, utcnow

MIGRATIONS = Path(__file__).parent / "migrations"


def _json_dumps(obj: Any) -> str:
    return json.dumps(json_safe(obj), default=str, allow_nan=False)


def tokens_hash(tokens: Sequence[str]) -> str:
    """Stable hash of a canonical postfix token list (de-duplication key of the factor library)."""
    return hashlib.sha256(json.dumps(list(tokens), separators=(",", ":")).encode()).hexdigest()


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


_MIGRATE_LOCK_KEY = 0x66696E6C6C6D  # PostgreSQL advisory lock id of finllm's migrations ("finllm")


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """Serialise migrations across processes: parallel jobs that open a fresh database at the same time
    would otherwise all try to create Alembic's version table. SQLite: an exclusive ``flock`` on
    ``<db file>.migrate.lock``; PostgreSQL: a session advisory lock; other back ends: none."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        import fcntl

        lock = Path(url.removeprefix("sqlite:///")).expanduser()
        with open(lock.with_name(lock.name + ".migrate.lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif url.startswith(("postgresql", "postgres")):
        from sqlalchemy import text

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK_KEY})
        finally:
            engine.dispose()
    else:
        yield


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``); safe to call from
    several processes at once."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with _migration_lock(url):
        command.upgrade(cfg, "head")


def _upsert_insert(session: Session) -> Any:
    """The dialect's ``insert`` with ``on_conflict_do_nothing`` (PostgreSQL, SQLite), else None."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return None
    return insert


@dataclass
class RunHandle:
    """What a use case records while its run is open (:meth:`Store.run`): ``metrics`` and ``artifacts`` are
    written when the block ends. ``fail(message)`` ends a run that raised nothing as ``failed`` (e.g. a
    factor request that found no usable factor)."""

    id: str
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    status: str = "finished"
    error: str | None = None

    def fail(self, message: str) -> None:
        self.status, self.error = "failed", message


class Store:
    """Handle on one database. Create with :func:`open_store`."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if run_migrations:
            migrate(url)
        # NaN / inf are not JSON (PostgreSQL's json type rejects them): metrics with a NaN IC store null
        self.engine = create_engine(url, future=True, pool_pre_ping=True, json_serializer=_json_dumps)
        if url.startswith("sqlite"):
            _sqlite_pragmas(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back everything on any exception."""
        with self._sessions() as s:
            with s.begin():
                yield s

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- runs -------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict[str, Any], *, name: str = "",
                  idempotency_key: str | None = None) -> str:
        """Create a run (status ``running``); an existing run with the same key is reset and reused."""
        config = absolute_paths(config, ("data", "out", "out_dir")) or {}
        with self.session() as s:
            if idempotency_key is not None:
                old = s.scalar(select(Run).where(Run.idempotency_key == idempotency_key))
                if old is not None:
                    s.execute(delete(PoolMember).where(PoolMember.run_id == old.id))
                    old.kind, old.name, old.config = kind, name, config
                    old.pid, old.host = os.getpid(), socket.gethostname()
                    old.status, old.started_at, old.finished_at = "running", utcnow(), None
                    old.metrics, old.artifacts, old.summary, old.error = {}, {}, None, None
                    return old.id
            run = Run(kind=kind, name=name, config=config, idempotency_key=idempotency_key,
                      pid=os.getpid(), host=socket.gethostname())
            s.add(run)
            s.flush()
            return run.id

    @contextmanager
    def run(self, kind: str, config: dict[str, Any], *, name: str = "",
            idempotency_key: str | None = None) -> Iterator[RunHandle]:
        """One run's whole lifecycle: start it (``running``), yield a :class:`RunHandle`, then record its
        metrics and artifacts as ``finished`` (or the handle's status); on an exception record ``failed``
        (``interrupted`` on KeyboardInterrupt) with the error, and re-raise."""
        handle = RunHandle(self.start_run(kind, config, name=name, idempotency_key=idempotency_key))
        try:
            yield handle
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            try:
                self.finish_run(handle.id, status=status, error=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the store is gone too: keep the original error; the reaper marks it
                pass
            raise
        self.finish_run(handle.id, metrics=handle.metrics, artifacts=handle.artifacts, status=handle.status,
                        error=handle.error)

    def finish_run(self, run_id: str, *, metrics: dict | None = None, artifacts: dict | None = None,
                   status: str = "finished", error: str | None = None) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r}")
            run.status, run.finished_at, run.error = status, utcnow(), error
            if metrics is not None:
                run.metrics = metrics
            if artifacts is not None:
                run.artifacts = {**(run.artifacts or {}), **absolute_paths(artifacts)}

    def reap_stale_runs(self) -> list[str]:
        """Mark failed every ``running`` run of this host whose process is gone (killed, crashed, or its
        pid now belongs to a process started after the run); returns their ids. Runs of other hosts
        are left alone: their liveness cannot be checked from here."""
        host = socket.gethostname()
        with self.session() as s:
            rows = list(s.scalars(select(Run).where(Run.status == "running", Run.host == host,
                                                    Run.pid.is_not(None))))
            stale = [r for r in rows if not process_alive(int(r.pid), r.started_at)]
            for r in stale:
                r.status, r.finished_at = "failed", utcnow()
                r.error = (f"process {r.pid} on {host} ended without finishing the run (killed?); "
                           f"marked failed when the store was next opened")
            return [r.id for r in stale]

    def set_summary(self, run_id: str, summary: str) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r}")
            run.summary = summary

    def get_run(self, run_id: str) -> Run | None:
        with self.session() as s:
            return s.get(Run, run_id)

    def latest_runs(self, kind: str | None = None, limit: int = 10) -> list[Run]:
        with self.session() as s:
            q = select(Run).order_by(Run.started_at.desc()).limit(limit)
            if kind:
                q = q.where(Run.kind == kind)
            return list(s.scalars(q))

    # ---- factor library ---------------------------------------------------------------------
    def save_factor(self, tokens: Sequence[str], formula: str, source: str, *, metrics: dict | None = None,
                    explanation: str | None = None, request_text: str | None = None,
                    run_id: str | None = None, session: Session | None = None) -> str:
        """Insert or update (by canonical-token hash) a factor; returns its id."""
        if session is None:
            with self.session() as s:
                return self.save_factor(tokens, formula, source, metrics=metrics, explanation=explanation,
                                        request_text=request_text, run_id=run_id, session=s)
        h = tokens_hash(tokens)
        row = session.scalar(select(Factor).where(Factor.expr_hash == h))
        insert = _upsert_insert(session)
        if row is None and insert is not None:
            # INSERT .. ON CONFLICT DO NOTHING: a concurrent writer saving the same factor waits for ours
            # (or we for theirs) instead of failing on the unique key; then both read the one row
            session.execute(insert(Factor).values(
                id=new_id(), expr_hash=h, tokens=list(tokens), formula=formula, source=source,
                metrics=metrics or {}, explanation=explanation, request_text=request_text, run_id=run_id,
                created_at=utcnow()).on_conflict_do_nothing(index_elements=["expr_hash"]))
            row = session.scalar(select(Factor).where(Factor.expr_hash == h))
        if row is None:
            row = Factor(expr_hash=h, tokens=list(tokens), formula=formula, source=source,
                         metrics=metrics or {}, explanation=explanation, request_text=request_text,
                         run_id=run_id)
            session.add(row)
            session.flush()
        else:
            if metrics is not None:
                row.metrics = metrics
            if explanation is not None:
                row.explanation = explanation
            if request_text is not None:
                row.request_text = request_text
        return row.id

    def save_pool(self, run_id: str, members: Sequence[dict[str, Any]], source: str) -> list[str]:
        """Save a pool atomically: ``members`` = [{tokens, formula, weight, metrics?, explanation?}]."""
        with self.session() as s:
            s.execute(delete(PoolMember).where(PoolMember.run_id == run_id))
            ids: list[str] = [""] * len(members)
            # factors in one global order (by hash): two pools sharing factors never deadlock on them
            for pos in sorted(range(len(members)), key=lambda i: tokens_hash(members[i]["tokens"])):
                m = members[pos]
                ids[pos] = self.save_factor(m["tokens"], m["formula"], m.get("source", source),
                                            metrics=m.get("metrics"), explanation=m.get("explanation"),
                                            run_id=run_id, session=s)
            for pos, (m, fid) in enumerate(zip(members, ids)):
                s.add(PoolMember(run_id=run_id, factor_id=fid, weight=float(m["weight"]), position=pos))
            return ids

    def pool(self, run_id: str) -> list[tuple[Factor, float]]:
        with self.session() as s:
            rows = s.execute(select(Factor, PoolMember.weight).join(PoolMember, PoolMember.factor_id == Factor.id)
                             .where(PoolMember.run_id == run_id).order_by(PoolMember.position))
            return [(f, w) for f, w in rows]

    def factors(self, source: str | None = None) -> list[Factor]:
        with self.session() as s:
            q = select(Factor).order_by(Factor.created_at)
            if source:
                q = q.where(Factor.source == source)
            return list(s.scalars(q))

    # ---- fraud --------------------------------------------------------------------------------
    def save_fraud_model(self, **fields: Any) -> str:
        fields = absolute_paths(fields, ("path", "dataset")) or {}
        if isinstance(fields.get("config"), dict):
            fields["config"] = absolute_paths(fields["config"], ("data",))
        with self.session() as s:
            row = FraudModel(**fields)
            s.add(row)
            s.flush()
            return row.id

    def get_fraud_model(self, model_id: str) -> FraudModel | None:
        with self.session() as s:
            return s.get(FraudModel, model_id)

    def delete_fraud_models(self, model_ids: Sequence[str]) -> None:
        """Delete these models' rows, their alerts and their weight files."""
        with self.session() as s:
            paths = list(s.scalars(select(FraudModel.path).where(FraudModel.id.in_(list(model_ids)))))
            s.execute(delete(Alert).where(Alert.model_id.in_(list(model_ids))))
            s.execute(delete(FraudModel).where(FraudModel.id.in_(list(model_ids))))
        for p in paths:
            Path(p).unlink(missing_ok=True)

    def save_alerts(self, model_id: str, batch: str, alerts: Sequence[dict[str, Any]],
                    run_id: str | None = None) -> int:
        """Replace the alerts of (model, batch) with ``alerts`` in one transaction; returns the count."""
        with self.session() as s:
            s.execute(delete(Alert).where(Alert.model_id == model_id, Alert.batch == batch))
            s.add_all(Alert(model_id=model_id, batch=batch, run_id=run_id, **a) for a in alerts)
            return len(alerts)

    def alerts(self, model_id: str, batch: str | None = None) -> list[Alert]:
        with self.session() as s:
            q = select(Alert).where(Alert.model_id == model_id).order_by(Alert.rank)
            if batch is not None:
                q = q.where(Alert.batch == batch)
            return list(s.scalars(q))


def process_alive(pid: int, since: datetime | None = None) -> bool:
    """Whether process ``pid`` on this host is running (not a zombie) and, given ``since``, was started
    no later than ``since`` (else the pid was reused by a newer process)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if since is not None:
            t0 = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            if proc.create_time() > t0.timestamp() + 1.0:
                return False
        return True
    except psutil.AccessDenied:  # exists, owned by another user
        return True
    except (psutil.NoSuchProcess, ValueError):
        return False


def check_database_url(url: str, source: str = "FINLLM_DATABASE_URL") -> str:
    """``url`` if it names a database finllm can keep runs in; else ConfigError naming ``source`` and the
    URL (password hidden): not a URL, an in-memory SQLite (results would vanish), an unknown driver."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    hint = "e.g. sqlite:////abs/path/finllm.db or postgresql+psycopg://user@host:5432/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"{source}: {url!r} is not a database URL ({hint})") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{source}: {shown!r}: unsupported database {backend!r} (use sqlite or postgresql)")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"{source}: {shown!r} is an in-memory SQLite database; runs would be lost when the "
                          f"command ends ({hint})")
    if backend == "sqlite" and Path(parsed.database).expanduser().is_dir():
        raise ConfigError(f"{source}: {shown!r}: {parsed.database} is a directory, not a database file")
    return url


def _redacted(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used in messages
        return "<database URL>"


def open_store(url: str | None = None, settings: Settings | None = None, *,
               source: str | None = None) -> Store:
    """Open (and migrate) the store at ``url`` or the configured ``database_url``.

    A URL that is not usable (malformed, in-memory, a directory, a corrupt file, a server that does not
    answer) is a ConfigError naming ``source`` (default: ``--db`` when ``url`` is given, else
    ``FINLLM_DATABASE_URL``) and the URL with its password hidden. Runs left ``running`` by a process
    that is gone are marked failed (:meth:`Store.reap_stale_runs`).
    """
    from sqlalchemy.exc import SQLAlchemyError

    settings = settings or load_settings()
    source = source or ("--db" if url else "FINLLM_DATABASE_URL")
    url = check_database_url(url or settings.database_url, source)
    try:
        store = Store(url)
        store.reap_stale_runs()
    except (SQLAlchemyError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
        raise ConfigError(f"{source}: cannot open database {_redacted(url)!r}: {reason}") from None
    return store


def store_or_default(store: Store | None) -> Store:
    """``store``, or the configured one (:func:`open_store`) when None: what a scheduled task passes."""
    return store if store is not None else open_store()
