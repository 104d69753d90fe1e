"""The production profile against real services: PostgreSQL from Debian's packages and an MLflow
tracking server on it, started and stopped by PID through `tessera services` (what `make
services-up` and `make services-down` run)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import pytest

from orchestration import services
from orchestration.lib.settings import PROJECT_ROOT, reload_settings

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    started = services.up(["production"])
    pids = services.status()
    yield {"started": started, "pids": pids}
    services.down(started)


def test_services_record_their_pids_and_stop_exactly_those(monkeypatch):
    # Under data/, not pytest's tmp folder: PostgreSQL runs as the `postgres` user when we are root,
    # and pytest's folders are private to their owner.
    tmp_path = Path(tempfile.mkdtemp(prefix="services-test-", dir=PROJECT_ROOT / "data"))
    tmp_path.chmod(0o755)
    monkeypatch.setattr(services, "SERVICES_DIR", tmp_path)
    monkeypatch.setenv("TESSERA_POSTGRES_PORT", "5439")
    reload_settings()
    started = services.up(["postgres"])
    assert started == ["postgres"]
    pid = int((tmp_path / "postgres.pid").read_text())
    os.kill(pid, 0)  # alive
    assert services.up(["postgres"]) == []  # already running: not started twice
    assert services.down(["postgres"]) == ["postgres"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "postgres.pid").exists()
    assert services.down(["postgres"]) == []
    shutil.rmtree(tmp_path)


@pytest.fixture
def production_home(production, tmp_path, monkeypatch):
    """A Dagster home with the production dagster.yaml, on the services' PostgreSQL."""
    shutil.copy(PROJECT_ROOT / "deploy" / "production" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("TESSERA_DAGSTER_POSTGRES_URL", services.postgres_url("dagster"))
    return tmp_path


def test_dagster_instance_keeps_runs_in_postgres(production_home, monkeypatch):
    from dagster_postgres import PostgresRunStorage

    monkeypatch.setenv("DAGSTER_HOME", str(production_home))

    @dg.asset
    def hello() -> int:
        return 1

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = dg.materialize([hello], instance=instance)
        assert result.success
    # A new instance (another process, another machine) sees the run.
    with dg.DagsterInstance.get() as again:
        record = again.get_run_by_id(result.run_id)
        assert record is not None and record.is_success


@pytest.mark.parametrize("first_use", [False, True], ids=["existing_pool", "new_pool"])
def test_production_runs_claiming_the_duckdb_pool_at_once_get_its_one_slot_in_turn(production_home, first_use):
    """With dagster-postgres's own event log, simultaneous claims of an existing pool could share its
    one slot, and of a new pool one of them failed (benchmarks/pool_claims.py)."""
    from benchmarks.pool_claims import simultaneous_claims

    assert simultaneous_claims(production_home, trials=8, first_use=first_use, claimers=4) == [[0, 0, 0, 1]] * 8


def test_a_new_default_pool_limit_applies_to_a_pool_that_exists(production_home):
    """dagster-postgres's own event log failed every claim of a pool whose default_limit changed."""
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
    from dagster._core.storage.dagster_run import DagsterRun

    pool, config = f"duckdb_{uuid.uuid4().hex[:8]}", (production_home / "dagster.yaml").read_text()
    for limit in (1, 2):
        (production_home / "dagster.yaml").write_text(config.replace("default_limit: 1", f"default_limit: {limit}"))
        run_id = uuid.uuid4().hex
        with (
            dg.DagsterInstance.from_config(str(production_home)) as instance,
            InstanceConcurrencyContext(instance, DagsterRun(job_name="limits", run_id=run_id)) as context,
        ):
            assert context.claim(pool, "ingest_events")
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == limit
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        instance.event_log_storage.delete_concurrency_limit(pool)


def test_mlflow_server_stores_runs_in_postgres(production):
    import mlflow

    ports = services.Ports.from_env()
    client = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{ports.mlflow}")
    experiment = client.get_experiment_by_name("production-profile-test") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("production-profile-test")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.75)
    client.set_terminated(run.info.run_id)
    con = services.pg_connect("mlflow", ports)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'auc'", (run.info.run_id,))
            stored = cur.fetchall()
    finally:
        con.close()
    assert stored == [(0.75,)]
