"""The private Dagster and dagster-dbt APIs Tessera overrides still have the shape it relies on.

Three places reach past the public APIs, each because no public way exists:
- orchestration/lib/dagster_storage/ subclasses Dagster's SQLite and PostgreSQL event log storages
  to serialise pool claims (Dagster offers no hook around a claim);
- orchestration/defs/dbt/definitions.py overrides two private methods of DbtCliResource to skip
  `dbt --version` and the in-process adapter on every step;
- orchestration/lib/cli_runs.py reads a run's events by type and cursor with
  DagsterInstance.get_records_for_run, which Dagster does not mark public, for `tessera run`'s progress.
An upgrade that renames or re-signs any of them fails here, by name, instead of silently falling
back to Dagster's behaviour (the overrides would simply no longer be called).
"""

import inspect
from functools import cached_property

from dagster import DagsterInstance
from dagster._core.storage.event_log.base import EventLogConnection
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster_dbt import DbtCliResource
from dagster_postgres.event_log.event_log import PostgresEventLogStorage

from orchestration.defs.dbt.definitions import VenvDbtCliResource
from orchestration.lib.dagster_storage import SerialClaimsSqliteEventLogStorage
from orchestration.lib.dagster_storage.postgres import SerialClaimsPostgresEventLogStorage


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_event_log_methods_the_serial_claims_wrap_keep_their_signatures():
    for base in (SqliteEventLogStorage, PostgresEventLogStorage):
        assert parameters(base.claim_concurrency_slot) == ["self", "concurrency_key", "run_id", "step_key", "priority"]
        assert parameters(base.initialize_concurrency_limit_to_default) == ["self", "concurrency_key"]
    for ours, base in (
        (SerialClaimsSqliteEventLogStorage, SqliteEventLogStorage),
        (SerialClaimsPostgresEventLogStorage, PostgresEventLogStorage),
    ):
        # Ours come first in the method resolution order, so Dagster's callers reach them.
        assert ours.claim_concurrency_slot is not base.claim_concurrency_slot
        assert ours.__mro__.index(base) > 1


def test_the_private_helpers_the_postgres_upsert_calls_still_exist():
    for name in (
        "_reconcile_concurrency_limits_from_slots",
        "_allocate_concurrency_slots",
        "index_transaction",
        "has_concurrency_limits_table",
        "has_default_pool_limit_col",
    ):
        assert hasattr(PostgresEventLogStorage, name), name
    assert parameters(PostgresEventLogStorage._allocate_concurrency_slots)[1:3] == ["conn", "concurrency_key"]
    assert {"concurrency_key", "limit", "using_default_limit"} <= set(ConcurrencyLimitsTable.c.keys())


def test_the_sqlite_storage_still_keeps_its_base_dir():
    # The file lock sits in the storage's folder, read from this attribute.
    assert "self._base_dir" in inspect.getsource(SqliteEventLogStorage.__init__)


def test_the_dbt_resource_overrides_replace_methods_dagster_dbt_still_calls():
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert isinstance(inspect.getattr_static(VenvDbtCliResource, "_cli_version"), cached_property)
    assert parameters(DbtCliResource._initialize_dbt_core_adapter) == ["self", "args"]
    source = inspect.getsource(DbtCliResource)
    assert "self._cli_version" in source and "self._initialize_dbt_core_adapter(" in source


def test_the_run_event_reader_of_the_cli_keeps_its_signature():
    assert parameters(DagsterInstance.get_records_for_run)[:5] == ["self", "run_id", "cursor", "of_type", "limit"]
    assert EventLogConnection._fields == ("records", "cursor", "has_more")
