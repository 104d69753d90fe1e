"""The production profile against real services: PostgreSQL from Debian's packages and an MLflow
tracking server on it, started and stopped by PID through `tessera services` (what `make
services-up` and `make services-down` run)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from orchestration import services
from orchestration.lib.settings import PROJECT_ROOT

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


def test_dagster_instance_keeps_runs_in_postgres(production, tmp_path, monkeypatch):
    from dagster_postgres import PostgresRunStorage

    shutil.copy(PROJECT_ROOT / "deploy" / "production" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("TESSERA_DAGSTER_POSTGRES_URL", services.postgres_url("dagster"))

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


def test_production_runs_claiming_the_duckdb_pool_at_once_get_its_one_slot_in_turn(production, tmp_path,
                                                                                   monkeypatch):
    from benchmarks.pool_claims import simultaneous_claims

    shutil.copy(PROJECT_ROOT / "deploy" / "production" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("TESSERA_DAGSTER_POSTGRES_URL", services.postgres_url("dagster"))
    assert simultaneous_claims(tmp_path, trials=30) == [1] * 30


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
