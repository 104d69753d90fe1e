"""Schedules, sensors, freshness policies, retries and the DuckDB pool: what keeps Tessera running
unattended."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.ingest.sensors import landing_events_sensor, partitions_for

ROOT = Path(__file__).resolve().parents[2]


def _message(message_id: str, timestamp: str) -> str:
    return json.dumps(
        {
            "messageId": message_id,
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "a1",
            "timestamp": timestamp,
            "receivedAt": timestamp,
            "properties": {},
            "context": {},
        }
    )


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def test_definitions_carry_the_schedule_sensors_partitions_and_checks():
    from orchestration.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.schedules} == {"daily_refresh", "weekly_model_training"}
    assert {s.name for s in defs.sensors} == {"landing_events_sensor", "eager_downstream", "erasure_requests_sensor"}
    # Erasure runs alone, and first in every run: every other source loads after it.
    erase = defs.resolve_job_def("erase")
    assert {k.to_user_string() for k in erase.asset_layer.selected_asset_keys} == {
        "raw/erasure_requests",
        "privacy/erasure_log",
    }
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["raw", "events"])).parent_keys == {dg.AssetKey(["privacy", "erasure_log"])}
    # dbt reads the identity assignments only once the sweep has taken erased persons out of them.
    assert graph.get(dg.AssetKey(["staging", "stg_identity_graph__assignments"])).parent_keys == {
        dg.AssetKey(["privacy", "erasure_sweep"])
    }
    assert graph.get(dg.AssetKey(["privacy", "erasure_sweep"])).parent_keys == {
        dg.AssetKey(["intermediate", "identity_assignments"])
    }
    job = defs.resolve_job_def("materialize_all")
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    assert defs.resolve_job_def("ingest_daily_events").partitions_def == job.partitions_def
    graph = defs.resolve_asset_graph()
    partitioned = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def}
    assert partitioned == {
        "raw/events",
        "raw/user_agents",
        "staging/stg_segment__events",
        "staging/stg_segment__user_agents",
        "intermediate/int_segment__events",
    }
    assert graph.get(dg.AssetKey(["marts", "segment_membership"])).automation_condition is not None
    assert graph.get(dg.AssetKey(["raw", "events"])).automation_condition is None  # the sensor and schedule decide
    # Models retrain weekly; the daily job scores with the champion and never trains.
    training = {
        dg.AssetKey(["ml", "clustering_model"]),
        dg.AssetKey(["ml", "purchase_30d_model"]),
        dg.AssetKey(["ml", "clv_model"]),
    }
    assert all("cron" in graph.get(k).automation_condition.get_label().lower() for k in training)
    daily = defs.resolve_job_def("daily_refresh_job").asset_layer.selected_asset_keys
    assert not training & daily and dg.AssetKey(["marts", "propensity_scores"]) in daily
    assert defs.resolve_job_def("train_models").asset_layer.selected_asset_keys >= training | {
        dg.AssetKey(["marts", "segment_membership"])
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("marts/segment_membership", "segments_meet_minimum_size") in checks
    assert not any("freshness" in name for _, name in checks)  # freshness is a policy, not a check
    # Every step that opens the warehouse holds the one DuckDB slot; the stream's observation reads Redis only.
    job_all = defs.resolve_implicit_global_asset_job_def()
    pools = {node.name: node.definition.pool for node in job_all.graph.node_dict.values()}
    assert pools.pop("stream") is None
    assert set(pools.values()) == {"duckdb"}, pools


def test_daily_refresh_runs_yesterdays_partition():
    from orchestration.definitions import daily_refresh

    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC))
    request = daily_refresh(context)
    assert request.partition_key == "2026-10-31"
    assert daily_refresh.job_name == "daily_refresh_job"


def test_sensor_requests_exactly_the_days_new_files_hold(tmp_path):
    landing = LandingZoneResource(root=str(tmp_path))
    _write(tmp_path / "events" / "2026-10-01-app.jsonl.gz", [_message("m1", "2026-10-01T10:00:00Z")])
    first = landing_events_sensor(dg.build_sensor_context(resources={"landing": landing}))
    assert "Started watching 1 event files" in first.skip_reason.skip_message and not first.run_requests
    # A new file: events of its arrival day, one late event of two days before, and a broken line.
    late = tmp_path / "events" / "2026-10-03-app.jsonl"
    _write(late, [_message("m2", "2026-10-03T09:00:00Z"), _message("m3", "2026-10-01T23:59:00Z"), "{not json"])
    os.utime(late, ns=(late.stat().st_mtime_ns + 10**9,) * 2)
    second = landing_events_sensor(dg.build_sensor_context(resources={"landing": landing}, cursor=first.cursor))
    assert sorted(r.partition_key for r in second.run_requests) == ["2026-10-01", "2026-10-03"]
    third = landing_events_sensor(dg.build_sensor_context(resources={"landing": landing}, cursor=second.cursor))
    assert not third.run_requests and third.skip_reason.skip_message == "No new event files."


def test_a_request_file_landing_starts_the_erase_job_once(tmp_path):
    from orchestration.defs.privacy.definitions import erasure_requests_sensor

    landing = LandingZoneResource(root=str(tmp_path))
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "requests.csv").write_text("requested_at,identifier_type,identifier\n")
    first = erasure_requests_sensor(dg.build_sensor_context(resources={"landing": landing}))
    assert len(first.run_requests) == 1  # pending requests are honoured when the sensor starts
    again = erasure_requests_sensor(dg.build_sensor_context(resources={"landing": landing}, cursor=first.cursor))
    assert not again.run_requests
    (tmp_path / "privacy" / "more.csv").write_text("requested_at,identifier_type,identifier\n")
    new = erasure_requests_sensor(dg.build_sensor_context(resources={"landing": landing}, cursor=again.cursor))
    assert len(new.run_requests) == 1 and new.run_requests[0].run_key != first.run_requests[0].run_key


def test_partitions_for_clips_to_the_partition_range():
    keys = ["2026-01-01", "2026-01-02", "2026-01-03"]
    days = {
        "old.jsonl": [dt.date(2025, 6, 1)],
        "future.jsonl": [dt.date(2026, 2, 1)],
        "broken.jsonl": [],
        "mid.jsonl": [dt.date(2026, 1, 2)],
    }
    assert partitions_for(days, keys) == {
        "2026-01-01": ["old.jsonl"],
        "2026-01-03": ["broken.jsonl", "future.jsonl"],
        "2026-01-02": ["mid.jsonl"],
    }


def test_the_segment_tables_carry_a_daily_freshness_policy_with_a_06_00_utc_deadline():
    """Read back from the code location's asset specs: the tables campaigns read must have been
    materialised in the day before each 06:00 UTC deadline; the other assets carry no policy."""
    from orchestration.definitions import defs

    policies = {
        spec.key.to_user_string(): spec.freshness_policy
        for spec in defs.resolve_all_asset_specs()
        if spec.freshness_policy is not None
    }
    assert set(policies) == {"marts/segment_membership", "marts/segment_membership_history"}
    expected = dg.FreshnessPolicy.cron(
        deadline_cron="0 6 * * *", lower_bound_delta=dt.timedelta(hours=24), timezone="UTC"
    )
    for policy in policies.values():
        assert policy == expected
        assert (policy.deadline_cron, policy.lower_bound_delta, policy.timezone) == (
            "0 6 * * *",
            dt.timedelta(hours=24),
            "UTC",
        )
    # What the UI's asset pages and the daemon read: the policy survives into the asset graph.
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["marts", "segment_membership_history"])).freshness_policy == expected
    assert graph.get(dg.AssetKey(["marts", "segment_report"])).freshness_policy is None


def _open_new_instance(home: str, barrier, outcomes) -> None:
    from orchestration.lib.dagster_storage import create_instance_tables

    try:
        barrier.wait(timeout=60)
        with dg.DagsterInstance.from_config(home) as instance:
            create_instance_tables(instance)
        outcomes.put("ok")
    except Exception as exc:
        outcomes.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_dagster_home_together_all_succeed(tmp_path):
    """Dagster creates a new SQLite instance's tables on first use, and first processes race to (6 of
    40 opens by pairs failed here, on `alembic_version` or `secondary_indexes`); ensure_dagster_home
    creates them."""
    import multiprocessing as mp

    from orchestration.cli import ensure_dagster_home

    context, outcomes = mp.get_context("fork"), []
    for trial in range(10):
        home = tmp_path / f"home{trial}"
        ensure_dagster_home(home)
        barrier, queue = context.Barrier(4), context.Queue()
        processes = [
            context.Process(target=_open_new_instance, args=(str(home), barrier, queue), daemon=True) for _ in range(4)
        ]
        for process in processes:
            process.start()
        outcomes += [queue.get(timeout=120) for _ in processes]
        for process in processes:
            process.join()
    assert [o for o in outcomes if o != "ok"] == []


@pytest.mark.parametrize("first_use", [False, True], ids=["existing_pool", "new_pool"])
def test_runs_claiming_the_duckdb_pool_at_once_get_its_one_slot_in_turn(tmp_path, first_use):
    """Dagster's own SQLite event log often grants two simultaneous claims the one slot
    (benchmarks/pool_claims.py); the instance `tessera run` writes never does."""
    from benchmarks.pool_claims import simultaneous_claims
    from orchestration.cli import ensure_dagster_home

    ensure_dagster_home(tmp_path)
    assert simultaneous_claims(tmp_path, trials=8, first_use=first_use, claimers=4) == [[0, 0, 0, 1]] * 8


@pytest.mark.slow
def test_two_runs_started_together_both_succeed_one_step_at_a_time(sample, tmp_path):
    """Two `dagster asset materialize` processes on one warehouse: the DuckDB pool (limit 1 in
    dagster.yaml) makes their warehouse steps take turns, so neither meets the file lock."""
    from orchestration.cli import ensure_dagster_home

    home = tmp_path / "dagster_home"
    ensure_dagster_home(home)  # (which creates the instance's tables: two first-ever processes would race to)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TESSERA_LANDING_DIR": str(sample.landing),
        "TESSERA_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    commands = [
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "orchestration.definitions",
            "--select",
            "raw/events,raw/user_agents",
            "--partition",
            day,
        ]
        for day in ("2026-10-29", "2026-10-30")
    ]
    processes = [
        subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert all("RUN_SUCCESS" in o for o in outputs)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        spans = []
        for run in runs:
            begin = {}
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                assert not (event and event.event_type_value == "STEP_UP_FOR_RETRY"), entry.message  # no lock retries
                if event and event.event_type_value == "STEP_START":
                    begin[event.step_key] = entry.timestamp
                elif event and event.event_type_value == "STEP_SUCCESS":
                    spans.append((begin[event.step_key], entry.timestamp, run.run_id))
    spans.sort()
    overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1] and a[2] != b[2]]
    assert not overlapping
