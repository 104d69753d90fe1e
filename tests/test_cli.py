"""The `tessera` command: conventions, exit codes, and messages for user mistakes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from orchestration.cli import main


def _tessera(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestration.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_help_lists_commands():
    proc = _tessera("--help")
    assert proc.returncode == 0
    for command in ("generate", "run", "erase", "why", "check-config", "report", "api"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--persons", "0"], "must be at least 1"),
        (["generate", "--persons", "many"], "'many' is not a whole number"),
        (["generate", "--as-of", "31/10/2026"], "is not a date; use YYYY-MM-DD"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_run_rejects_a_bad_as_of_date_without_a_traceback(tmp_path):
    proc = _tessera(
        "run",
        env={
            "TESSERA_AS_OF": "last tuesday",
            "TESSERA_LANDING_DIR": str(tmp_path),
            "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "dh"),
        },
    )
    assert proc.returncode == 2
    assert "TESSERA_AS_OF='last tuesday' is not a date" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_refuses_a_scoring_date_after_today_before_any_step(tmp_path):
    proc = _tessera(
        "run",
        env={
            "TESSERA_AS_OF": "9999-12-31",
            "TESSERA_LANDING_DIR": str(tmp_path),
            "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "dh"),
        },
    )
    assert proc.returncode == 2
    assert "TESSERA_AS_OF='9999-12-31' lies after today" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w.duckdb").exists()


def test_run_rejects_a_day_outside_the_partitions_without_a_traceback(tmp_path):
    env = {
        "TESSERA_LANDING_DIR": str(tmp_path),
        "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "TESSERA_PARTITIONS_START": "2026-01-01",
    }
    proc = _tessera("run", "--day", "2025-12-31", env=env)
    assert proc.returncode == 2
    assert "there is no daily partition 2025-12-31; the partitions start on 2026-01-01" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "events").exists()  # nothing was generated
    bad = _tessera("run", "--day", "yesterday", env=env)
    assert bad.returncode == 2 and "'yesterday' is not a date; use YYYY-MM-DD" in bad.stderr


def test_generate_writes_the_landing_contract_and_truth(tmp_path):
    proc = _tessera("generate", "--persons", "30", "--out", str(tmp_path / "landing"))
    assert proc.returncode == 0, proc.stderr
    for folder in ("events", "crm", "orders", "enrichment", "privacy"):
        assert any((tmp_path / "landing" / folder).iterdir()), folder
    for name in ("identifiers.csv", "persons.csv", "bots.csv", "faults.csv", "summary.json"):
        assert (tmp_path / "truth" / name).is_file(), name


def test_run_rejects_a_bad_segment_rule_before_starting(tmp_path):
    (tmp_path / "bad.yml").write_text(
        "segments:\n  - name: vip\n    description: x\n    owner: me\n    type: rule\n    rule: monetary_totl > 5\n"
    )
    proc = _tessera("run", env={"TESSERA_SEGMENTS_DIR": str(tmp_path), "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bad.yml, key 'rule': Segment 'vip': unknown column 'monetary_totl'" in proc.stderr
    assert "Did you mean column 'monetary_total'?" in proc.stderr
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["why", "email", "nobody@example.com", "vip"], 1, "No person has email 'nobody@example.com'"),
        (["why", "ssn", "123", "vip"], 1, "unknown identifier type 'ssn'"),
    ],
)
def test_why_explains_what_is_wrong(tmp_path, args, code, message):
    from orchestration.lib.warehouse import connect

    warehouse = tmp_path / "w.duckdb"
    with connect(warehouse) as con:
        con.execute("CREATE TABLE marts.identity_map (identifier_type VARCHAR, identifier VARCHAR, person_id VARCHAR)")
    proc = _tessera(*args, env={"TESSERA_WAREHOUSE": str(warehouse)})
    assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr


def test_api_refuses_to_start_without_a_token(tmp_path):
    proc = _tessera("api", env={"TESSERA_API_TOKEN": ""})
    assert proc.returncode == 2 and "TESSERA_API_TOKEN must be set" in proc.stderr


def test_report_says_what_is_missing(tmp_path):
    from orchestration.lib.warehouse import connect

    env = {"TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"), "TESSERA_REPORTS_DIR": str(tmp_path / "reports")}
    missing = _tessera("report", env=env)
    assert missing.returncode == 2 and "w.duckdb does not exist; run `make run` first" in missing.stderr
    with connect(tmp_path / "w.duckdb"):
        pass
    empty = _tessera("report", env=env)
    assert empty.returncode == 1 and "marts.segment_report is empty" in empty.stderr
    latest = _tessera("report", "--latest", env=env)
    assert latest.returncode == 1 and "no report in" in latest.stderr
    for proc in (missing, empty, latest):
        assert "Traceback" not in proc.stderr


# A small Dagster run in its own process, as `dagster job execute` runs materialize_all: a step that
# succeeds, one that fails with a Failure, one that cannot run after it, and a check that does not pass.
TOY_RUN = """
import sys
import dagster as dg
from orchestration.lib.cli_runs import RUN_TAG

@dg.asset
def loaded():
    return 1

@dg.asset(deps=[loaded])
def dated():
    raise dg.Failure(description="Nothing dates this run: set TESSERA_AS_OF.")

@dg.asset(deps=[dated])
def segments():
    return 2

@dg.asset
def sized():
    return 3

@dg.asset_check(asset=sized)
def big_enough():
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description="vip: 3 < 50")

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    result = dg.materialize([loaded, dated, segments, sized, big_enough], instance=instance,
                            tags={RUN_TAG: sys.argv[2]}, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def _toy_run(tmp_path, monkeypatch, terminal: bool):
    import dagster as dg

    from orchestration import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    cli.ensure_dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        return cli._execute_with_progress(
            [sys.executable, "-c", TOY_RUN, str(tmp_path), "key1"], instance, "key1", verbose=False
        )


def test_run_shows_a_bar_of_finished_steps_on_a_terminal_from_the_runs_events(tmp_path, monkeypatch, capsys):
    code, progress, run_id, _ = _toy_run(tmp_path, monkeypatch, terminal=True)
    out, err = capsys.readouterr()
    assert code == 1 and run_id and not out
    # Five steps planned (four assets and the check), four ended; `segments` never started.
    assert "materialising" in err and "4/5" in err
    assert re.search(r"\[\d/5\] dated FAILED after [\d.]+s: Nothing dates this run: set TESSERA_AS_OF\.", err)
    assert "check big_enough on sized did not pass (WARN): vip: 3 < 50" in err
    assert progress.not_run() == ["segments"] and len(progress.failures) == 1


def test_run_prints_a_line_per_step_and_why_the_run_failed_off_a_terminal(tmp_path, monkeypatch, capsys):
    from orchestration import cli

    code, progress, run_id, output = _toy_run(tmp_path, monkeypatch, terminal=False)
    out, err = capsys.readouterr()
    assert code == 1 and not err
    assert re.search(r"^\[\d/5\] loaded succeeded after [\d.]+s: loaded$", out, re.M), out
    assert re.search(r"^\[\d/5\] sized_big_enough succeeded after [\d.]+s: check big_enough did not pass$", out, re.M)
    assert "STEP_SUCCESS" not in out  # no log text: Dagster's output is kept aside
    cli._print_failure("run", code, progress, run_id, output)
    out, err = capsys.readouterr()
    assert not out  # a step says why: Dagster's output is not needed
    assert f"tessera run: the Dagster run {run_id} failed (exit 1)." in err
    assert re.search(r"  - step dated failed after [\d.]+s: Nothing dates this run: set TESSERA_AS_OF\.", err)
    assert "1 step(s) did not run: segments" in err and f"http://127.0.0.1:3000/runs/{run_id}" in err


def test_a_dagster_that_fails_before_its_run_starts_shows_its_own_output(tmp_path, monkeypatch, capsys):
    import dagster as dg

    from orchestration import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    broken = "import sys; print('dagster: could not load orchestration.definitions'); sys.exit(1)"
    with dg.DagsterInstance.ephemeral() as instance:
        code, progress, run_id, output = cli._execute_with_progress(
            [sys.executable, "-c", broken], instance, "k", verbose=False
        )
    assert (code, run_id) == (1, None)
    cli._print_failure("erase", code, progress, run_id, output)
    out, err = capsys.readouterr()
    assert "could not load orchestration.definitions" in out
    assert "tessera erase: Dagster exited with 1 before it started a run" in err


@pytest.mark.parametrize(
    "env, args, message",
    [
        ({}, ["services", "up", "kafka"], "Unknown service 'kafka': choose from postgres, mlflow"),
        (
            {"TESSERA_POSTGRES_PORT": "five"},
            ["services", "up", "postgres"],
            "TESSERA_POSTGRES_PORT='five' must be a port number",
        ),
        ({"TESSERA_ENGINE": "snowflake"}, ["run"], "TESSERA_ENGINE='snowflake' must be 'duckdb'"),
        (
            {"TESSERA_ENGINE": "spark", "TESSERA_SPARK_PORT": "1"},
            ["run"],
            "TESSERA_ENGINE=spark: No Spark Thrift server answers at 127.0.0.1:1 (TESSERA_SPARK_HOST, TESSERA_SPARK_PORT): "
            "start the local cluster with `make services-up`",
        ),
        (
            {"TESSERA_ML_FRAME_ROWS": "ten"},
            ["run"],
            "TESSERA_ML_FRAME_ROWS='ten' must be a whole number of at least 1000",
        ),
    ],
)
def test_engine_and_services_mistakes_exit_2_with_a_message(tmp_path, env, args, message):
    proc = _tessera(
        *args,
        env={
            **env,
            "TESSERA_SERVICES_DIR": str(tmp_path / "services"),
            "TESSERA_LANDING_DIR": str(tmp_path),
            "DAGSTER_HOME": str(tmp_path / "dh"),
        },
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_spark_build_says_what_is_missing(tmp_path):
    proc = _tessera("spark-build", env={"TESSERA_WAREHOUSE": str(tmp_path / "none.duckdb")})
    assert proc.returncode == 2
    assert "does not exist; run `make run` first" in proc.stderr


def test_run_without_anything_to_date_it_says_what_to_set_before_any_step(tmp_path):
    (tmp_path / "enrichment").mkdir()
    (tmp_path / "enrichment" / "firms.csv").write_text("email_domain,company_name\nacme.com,Acme\n")
    env = {
        "TESSERA_LANDING_DIR": str(tmp_path),
        "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "DAGSTER_HOME": str(tmp_path / "dh"),
    }
    proc = _tessera("run", env=env)
    assert proc.returncode == 2
    assert "nothing dates this run: there is no event, order or CRM file" in proc.stderr
    assert "set TESSERA_AS_OF=YYYY-MM-DD" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w.duckdb").exists()


def _a_warehouse_with_one_request(tmp_path) -> dict:
    """A warehouse from an earlier run that knows two persons, and a request to erase one of them;
    the environment of a run against it."""
    from orchestration.lib.warehouse import connect

    warehouse = tmp_path / "w.duckdb"
    with connect(warehouse) as con:
        con.execute(
            "CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES ('user_id', 'u-7f1a2b', 'p_7f1a'), "
            "('customer_id', 'C-7f1a', 'p_7f1a'), ('user_id', 'u-other', 'p_other')) "
            "t(identifier_type, identifier, person_id)"
        )
    (tmp_path / "landing" / "privacy").mkdir(parents=True)
    (tmp_path / "landing" / "privacy" / "requests.csv").write_text(
        "requested_at,identifier_type,identifier\n2026-11-01T09:00:00Z,user_id,u-7f1a2b\n"
    )
    return {
        "TESSERA_LANDING_DIR": str(tmp_path / "landing"),
        "TESSERA_WAREHOUSE": str(warehouse),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "TESSERA_EXPORTS_DIR": str(tmp_path / "exports"),
        "TESSERA_REPORTS_DIR": str(tmp_path / "reports"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
    }


def _erased(warehouse) -> bool:
    from orchestration.lib.warehouse import connect

    with connect(warehouse, read_only=True) as con:
        left = con.execute("SELECT identifier FROM marts.identity_map").fetchall()
    return left == [("u-other",)] and b"u-7f1a2b" not in warehouse.read_bytes()


def test_erase_applies_the_requests_alone_and_says_what_it_did(tmp_path):
    """No events, no CRM, no gate, no model: `tessera erase` needs nothing but the requests."""
    env = _a_warehouse_with_one_request(tmp_path)
    proc = _tessera("erase", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Requests so far: 1 erased" in proc.stdout
    assert _erased(tmp_path / "w.duckdb")


def test_a_run_whose_steps_fail_still_completes_its_erasures(tmp_path):
    """The whole job as `tessera run` runs it (past its refusal to start), with nothing to date the run
    by: dbt's first step fails and everything after it is skipped, but the erasure ran first and is
    complete, its check included. The output comes from the run's events: each step, the failed one
    with its error, what did not run, and where to look."""
    env = _a_warehouse_with_one_request(tmp_path)
    script = (
        "import os, sys; from pathlib import Path; from orchestration import cli; "
        "from orchestration.defs.partitions import all_days_tags; "
        "cli.ensure_dagster_home(Path(os.environ['DAGSTER_HOME'])); "
        "sys.exit(cli._execute_job('run', 'materialize_all', all_days_tags(), False))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert re.search(
        r"^\[\d+/\d+\] privacy__erasure_log_no_trace_of_erased_persons succeeded after .*: "
        r"check no_trace_of_erased_persons passed$",
        proc.stdout,
        re.M,
    ), log[-3000:]
    assert re.search(
        r"^\[\d+/\d+\] dbt_before_identity_graph FAILED after .*: Nothing dates this run", proc.stdout, re.M
    ), log[-3000:]
    assert "tessera run: the Dagster run " in proc.stderr and "  - step dbt_before_identity_graph failed" in proc.stderr
    assert re.search(r"\d+ step\(s\) did not run: ", proc.stderr), proc.stderr
    assert "STEP_SUCCESS" not in log  # Dagster's log text stays out of it
    assert _erased(tmp_path / "w.duckdb")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_s", [25])
def test_a_run_killed_with_sigkill_leaves_nothing_half_written_and_the_next_run_completes(
    sample, tmp_path, kill_after_s
):
    """SIGKILL of the whole Dagster run (the job and its steps, no cleanup): the next connection finds
    no staging table, the next run frees what the killed one held and completes, and no export folder
    is left half-written."""
    import shutil
    import signal
    import time

    from orchestration.lib.warehouse import WarehouseLockedError, connect

    landing = tmp_path / "landing"
    shutil.copytree(sample.landing, landing)
    env = {
        **os.environ,
        "TESSERA_LANDING_DIR": str(landing),
        "TESSERA_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "TESSERA_EXPORTS_DIR": str(tmp_path / "exports"),
        "TESSERA_REPORTS_DIR": str(tmp_path / "reports"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "run"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(kill_after_s)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, `dagster job execute` and dbt alike
    proc.wait(timeout=30)
    # The group's other processes die a moment after its leader; until then one may hold DuckDB's lock.
    deadline = time.monotonic() + 30
    while True:
        try:
            with connect(tmp_path / "w.duckdb") as con:
                staging = con.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' "
                    "AND starts_with(table_name, '_')"
                ).fetchone()[0]
            break
        except WarehouseLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert not staging
    again = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run"], env=env, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # The killed run held the DuckDB pool's one slot: without its release, this run would wait forever.
    assert "Marked failed the 1 run(s) of a `tessera` command that was killed" in again.stdout
    assert not list((tmp_path / "exports").glob("*/.*"))
    assert not list(tmp_path.glob(".w.duckdb.compact-*"))
