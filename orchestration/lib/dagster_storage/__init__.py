"""Dagster event log storages whose pool claims take turns across processes.

Dagster claims a pool slot by reading a free slot row and taking it in a second statement, and
creates a pool's slots on its first claim by counting them and adding the missing ones. Two runs
claiming at the same instant can both take the `duckdb` pool's one slot, and the second then meets
DuckDB's file lock; with Dagster's own storages that happens to a sixth or more of simultaneous
claims, on SQLite and on PostgreSQL alike (benchmarks/pool_claims.py). These storages hold one
instance-wide lock around each claim and each pool's setup: a file lock next to the SQLite files,
an advisory lock in PostgreSQL (`dagster_storage.postgres`, which needs the `production` extra).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencyClaimStatus


def create_instance_tables(instance) -> None:
    """Use each of the instance's storages once (runs, event log, schedules), so that each creates its
    tables: a new SQLite instance creates them on first use, and first processes race to."""
    instance.get_runs(limit=1)
    instance.event_log_storage.get_concurrency_keys()
    instance.all_instigator_state()


class SerialClaims:
    """Mixed in before a Dagster event log storage: its claims and pool set-ups under `_claims_lock()`."""

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


class SerialClaimsSqliteEventLogStorage(SerialClaims, SqliteEventLogStorage):
    """Dagster's SQLite event log (the default instance's), with claims under a file lock."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _claims_lock(self) -> Iterator[None]:
        with open(os.path.join(self._base_dir, "pool_claims.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
            yield
