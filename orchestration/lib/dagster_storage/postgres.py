"""The production profile's event log storage: dagster-postgres's, with pool claims under an
advisory lock (see the package's docstring). It needs the `production` extra (dagster-postgres)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.dialects import postgresql

from orchestration.lib.dagster_storage import SerialClaims

# pg_advisory_lock's key for the claims: any fixed 64-bit number that nothing else on the database uses.
POSTGRES_CLAIMS_LOCK = 0x7E55E7A


class SerialClaimsPostgresEventLogStorage(SerialClaims, PostgresEventLogStorage):
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
