"""Dagster event log storages whose pool claims take turns across processes.

Dagster claims a pool slot by reading a free slot row and taking it in a second statement. Two runs
claiming at the same instant can both take the `duckdb` pool's one slot, and the second then meets
DuckDB's file lock; with Dagster's own storages that happens to a sixth or more of simultaneous
claims, on SQLite and on PostgreSQL alike (benchmarks/pool_claims.py). These storages hold one
instance-wide lock around each claim: a file lock next to the SQLite files, an advisory lock in
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencyClaimStatus
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# pg_advisory_lock's key for the claims: any fixed 64-bit number that nothing else on the database uses.
POSTGRES_CLAIMS_LOCK = 0x7E55E7A


class _SerialClaims:
    def _claims_lock(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str,
                               priority: int | None = None) -> ConcurrencyClaimStatus:
        with self._claims_lock():
            return super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)  # type: ignore[misc]


class SerialClaimsSqliteEventLogStorage(_SerialClaims, SqliteEventLogStorage):
    """Dagster's SQLite event log (the default instance's), with claims under a file lock."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _claims_lock(self) -> Iterator[None]:
        with open(os.path.join(self._base_dir, "pool_claims.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
            yield


class SerialClaimsPostgresEventLogStorage(_SerialClaims, PostgresEventLogStorage):
    """dagster-postgres's event log (the production profile's), with claims under an advisory lock."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))

    @contextlib.contextmanager
    def _claims_lock(self) -> Iterator[None]:
        with self._engine.connect() as conn:  # its own session: the lock ends with it
            conn.execute(db.text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRES_CLAIMS_LOCK})
            try:
                yield
            finally:
                conn.execute(db.text("SELECT pg_advisory_unlock(:key)"), {"key": POSTGRES_CLAIMS_LOCK})
