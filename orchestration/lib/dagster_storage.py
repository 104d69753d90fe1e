"""Dagster event log storages whose pool claims take turns across processes.

Dagster claims a pool slot by reading a free slot row and taking it in a second statement, and
creates a pool's slots on its first claim by counting them and adding the missing ones. Two runs
claiming at the same instant can both take the `duckdb` pool's one slot, and the second then meets
DuckDB's file lock; with Dagster's own storages that happens to a sixth or more of simultaneous
claims, on SQLite and on PostgreSQL alike (benchmarks/pool_claims.py). These storages hold one
instance-wide lock around each claim and each pool's setup: a file lock next to the SQLite files,
an advisory lock in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencyClaimStatus
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.dialects import postgresql


def create_instance_tables(instance) -> None:
    """Use each of the instance's storages once (runs, event log, schedules), so that each creates its
    tables: a new SQLite instance creates them on first use, and first processes race to."""
    instance.get_runs(limit=1)
    instance.event_log_storage.get_concurrency_keys()
    instance.all_instigator_state()


# pg_advisory_lock's key for the claims: any fixed 64-bit number that nothing else on the database uses.
POSTGRES_CLAIMS_LOCK = 0x7E55E7A


class _SerialClaims:
    def _claims_lock(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None
    ) -> ConcurrencyClaimStatus:
        with self._claims_lock():
            return super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)  # type: ignore[misc]

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        with self._claims_lock():
            return super().initialize_concurrency_limit_to_default(concurrency_key)  # type: ignore[misc]


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
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        """Dagster's inserts the pool's limit and, if the pool exists, updates it in the same
        transaction, which PostgreSQL has aborted by then: once the pool existed, a new
        `default_limit` in dagster.yaml made every claim on it fail. Here the limit is upserted."""
        default_limit = self._instance.global_op_concurrency_default_limit if self.has_instance else None
        if default_limit is None or not (self.has_concurrency_limits_table and self.has_default_pool_limit_col):
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        with self._claims_lock():
            self._reconcile_concurrency_limits_from_slots()
            with self.index_transaction() as conn:
                conn.execute(
                    postgresql.insert(ConcurrencyLimitsTable)
                    .values(concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True)
                    .on_conflict_do_update(index_elements=["concurrency_key"], set_={"limit": default_limit})
                )
                self._allocate_concurrency_slots(conn, concurrency_key, default_limit)
        return True

    @contextlib.contextmanager
    def _claims_lock(self) -> Iterator[None]:
        with self._engine.connect() as conn:  # its own session: the lock ends with it
            conn.execute(db.text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRES_CLAIMS_LOCK})
            try:
                yield
            finally:
                conn.execute(db.text("SELECT pg_advisory_unlock(:key)"), {"key": POSTGRES_CLAIMS_LOCK})
