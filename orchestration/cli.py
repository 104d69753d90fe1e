"""The `tessera` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.lib.cli_runs import RunProgress


def _cmd_generate(args: argparse.Namespace) -> int:
    if args.messy:
        from orchestration.sample_data.messy import MessyConfig, generate_messy

        truth = args.truth or Path(args.out).parent / "truth"
        summary = generate_messy(args.out, MessyConfig(persons=args.persons, seed=args.seed, as_of=args.as_of), truth)
        print(
            f"Wrote a messy landing zone of {args.persons:,} persons to {args.out}: records {summary['records']}. "
            f"Planted dirt and ground truth: {truth}"
        )
        return 0
    from tqdm import tqdm

    from orchestration.sample_data.generator import GeneratorConfig, default_workers, generate

    cfg = GeneratorConfig(
        persons=args.persons,
        seed=args.seed,
        as_of=args.as_of,
        history_days=args.history_days,
        workers=args.workers or default_workers(),
    )
    started = time.perf_counter()
    chunks = -(-cfg.persons // cfg.chunk_size)
    with tqdm(total=chunks, desc="generating", unit="chunk", disable=not sys.stderr.isatty()) as bar:
        summary = generate(args.out, cfg, truth_dir=args.truth, progress=lambda *_: bar.update(1))
    counts = summary["counts"]
    print(
        f"Wrote {cfg.persons:,} persons to {args.out} in {time.perf_counter() - started:.1f}s: "
        f"{counts.get('event_messages', 0):,} event messages, {counts.get('orders_in_export', 0):,} orders, "
        f"{summary['planted_faults']} planted faults. Ground truth: "
        f"{Path(args.truth) if args.truth else Path(args.out).parent / 'truth'}"
    )
    return 0


LANDING_FOLDERS = ("events", "crm", "orders", "enrichment", "privacy")
DAGSTER_YAML = """# Written by `tessera run` and `make`. Telemetry off; one step at a time, across runs, may hold the
# DuckDB pool (every asset that opens the warehouse), and runs claim its slot in turn (the event log
# below); a run whose process died is retried twice (a step that meets a DuckDB lock held outside
# Dagster retries itself; other failures need a person); the daemon frees the slots a run still
# holds a minute after it ended (terminated in the UI, for one whose process was killed), and
# evaluates the assets' freshness policies (Dagster's default, spelled out).
telemetry:
  enabled: false
freshness:
  enabled: true
event_log_storage:
  module: orchestration.lib.dagster_storage
  class: SerialClaimsSqliteEventLogStorage
  config:
    base_dir: {storage}
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 60
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""


def _landing_is_empty(root: Path) -> bool:
    return not any(
        p.is_file() for folder in LANDING_FOLDERS if (root / folder).is_dir() for p in (root / folder).rglob("*")
    )


def _has_dated_input(settings) -> bool:
    """Whether an event, order or CRM file is there to read, or the warehouse kept such records from
    an earlier run: the run is dated by the latest of them when TESSERA_AS_OF is not set."""
    from orchestration.defs.ingest.sources_config import cached_sources_config

    config = cached_sources_config(settings.sources_config)
    if any(config.files(source, settings.landing_dir).files for source in ("events", "orders", "crm")):
        return True
    if not settings.warehouse.exists():
        return False
    from orchestration.lib.warehouse import connect

    with connect(settings.warehouse, read_only=True) as con:
        tables = {
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'"
            ).fetchall()
        }
        return any(
            con.execute(f"SELECT count(*) FROM raw.{t}").fetchone()[0]
            for t in ("events", "order_lines", "crm_customers")
            if t in tables
        )


def _settings(command: str):
    """The settings from the environment, or None after saying which one is wrong (exit 2)."""
    from orchestration.lib.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"tessera {command}: {exc}", file=sys.stderr)
        return None


def ensure_dagster_home(home: Path) -> None:
    """Write $DAGSTER_HOME/dagster.yaml, unless the user wrote their own, and create the new
    instance's SQLite tables: the first processes on a new home (the webserver and the daemon, or
    two runs) would race to create them."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text(encoding="utf-8").startswith("# Written by `tessera run`"):
        path.write_text(DAGSTER_YAML.format(storage=json.dumps(str((home / "storage").resolve()))), encoding="utf-8")
        if not all((home / folder).is_dir() for folder in ("history", "storage", "schedules")):
            import dagster as dg

            from orchestration.lib.dagster_storage import create_instance_tables

            with dg.DagsterInstance.from_config(str(home)) as instance:
                create_instance_tables(instance)


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from orchestration.lib.settings import export_for_subprocesses

    settings = _settings("run")
    if settings is None:
        return 2
    export_for_subprocesses(settings)
    if settings.engine == "spark":
        from orchestration.lib import spark

        try:
            with spark.connect():
                pass
        except spark.SparkUnavailableError as exc:
            print(f"tessera run: TESSERA_ENGINE=spark: {exc}", file=sys.stderr)
            return 2
    problems = _config_problems(settings)
    if problems:
        print("tessera run: the configuration has problems; nothing was run.\n" + "\n".join(problems), file=sys.stderr)
        return 2
    tags = _partition_tags(args.day.isoformat() if args.day else None)
    if not tags:
        print(
            f"tessera run: there is no daily partition {args.day}; the partitions start on "
            f"{settings.partitions_start} (TESSERA_PARTITIONS_START) and end today.",
            file=sys.stderr,
        )
        return 2
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    ensure_dagster_home(settings.dagster_home)
    if settings.sources_config is None and _landing_is_empty(settings.landing_dir):
        print(
            f"The landing folder {settings.landing_dir} is empty: writing {args.sample_persons:,} sample persons first."
        )
        rc = main(["generate", "--persons", str(args.sample_persons), "--out", str(settings.landing_dir)])
        if rc:
            return rc
    if settings.as_of is None and not _has_dated_input(settings):
        print(
            f"tessera run: nothing dates this run: there is no event, order or CRM file "
            f"({'in the sources config ' + str(settings.sources_config) if settings.sources_config else 'under ' + str(settings.landing_dir)}) "
            "and the warehouse holds none from earlier runs, so there is no date to compute features and segments "
            "as of. Add event, order or CRM files, or set TESSERA_AS_OF=YYYY-MM-DD. Nothing was run.",
            file=sys.stderr,
        )
        return 2
    print(
        f"Materialising every asset into {settings.warehouse} (Dagster instance: {settings.dagster_home}), "
        + (f"events of {args.day} and the {settings.lookback_days} days before" if args.day else "events of every day")
    )
    started = time.perf_counter()
    returncode = _execute_job("run", "materialize_all", tags, args.verbose)
    if returncode != 0:
        return returncode
    print(f"Done in {time.perf_counter() - started:.0f}s.")
    _print_summary(settings.warehouse, settings.exports_dir)
    report = _latest_report(settings.reports_dir)
    if report:
        print(f"Segment report: {report} (open it in a browser; no server needed)")
    print("Open the Dagster UI with `make ui` (http://127.0.0.1:3000) to see the assets, checks and this run.")
    return 0


def _cmd_erase(args: argparse.Namespace) -> int:
    import os

    from orchestration.lib.settings import export_for_subprocesses

    settings = _settings("erase")
    if settings is None:
        return 2
    export_for_subprocesses(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    ensure_dagster_home(settings.dagster_home)
    print(
        f"Applying the erasure requests under {settings.landing_dir / 'privacy'} to {settings.warehouse}, the "
        "exports and the model registry"
    )
    started = time.perf_counter()
    returncode = _execute_job("erase", "erase", {}, args.verbose)
    if returncode != 0:
        return returncode
    import duckdb

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        outcomes = con.execute("SELECT outcome, count(*) FROM privacy.erasure_log GROUP BY 1 ORDER BY 1").fetchall()
    print(
        f"Done in {time.perf_counter() - started:.0f}s. Requests so far: "
        + (", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in outcomes) or "none")
    )
    return 0


def _execute_job(command: str, job: str, tags: dict[str, str], verbose: bool) -> int:
    """`dagster job execute` of `job` with progress, after freeing what killed runs hold; on failure,
    which steps failed and why, and where to look."""
    import os

    import dagster as dg

    from orchestration.lib import cli_runs

    home = Path(os.environ["DAGSTER_HOME"])
    released = cli_runs.release_dead_runs(home)
    if released:
        print(
            f"Marked failed the {len(released)} run(s) of a `tessera` command that was killed, and freed the steps "
            f"they held: {', '.join(released)}"
        )
    dagster = Path(sys.executable).parent / "dagster"
    with cli_runs.run_lock(home) as (key, lock_fd), dg.DagsterInstance.from_config(str(home)) as instance:
        returncode, progress, run_id, output = _execute_with_progress(
            [
                str(dagster),
                "job",
                "execute",
                "-m",
                "orchestration.definitions",
                "-j",
                job,
                "--tags",
                json.dumps({**tags, cli_runs.RUN_TAG: key}),
            ],
            instance,
            key,
            verbose,
            keep_fds=(lock_fd,),
        )
    if returncode != 0:
        _print_failure(command, returncode, progress, run_id, output if not verbose else "")
    return returncode


def _partition_tags(day: str | None) -> dict[str, str]:
    """Run tags for the daily event partitions a run covers: all of them, or one day ({} when
    there is no such partition)."""
    from orchestration.defs.partitions import all_days_tags, daily_event_partitions

    if day is None:
        return all_days_tags()
    keys = daily_event_partitions.get_partition_keys()
    if day not in keys:
        return {}
    return {"dagster/partition": day}


def _execute_with_progress(
    command: list[str], instance, key: str, verbose: bool, keep_fds: tuple[int, ...] = ()
) -> tuple[int, RunProgress, str | None, str]:
    """Run `dagster job execute` (with `keep_fds` open in it) and follow its run, tagged with `key`,
    through the events it writes to `instance`: a bar of finished steps on a terminal, else a line per
    step; problems as they happen either way (with -v, Dagster's own log instead of the lines).
    Returns the exit code, the RunProgress, the run id (None if no run started) and, without -v, the
    tail of Dagster's output."""
    import tempfile

    from tqdm import tqdm

    from orchestration.lib import cli_runs

    show_bar = sys.stderr.isatty() and not verbose
    progress = cli_runs.RunProgress()
    run_id = cursor = None
    with tempfile.TemporaryFile() as output:
        # Dagster's own output is shown only when the events cannot say what failed (no run started, say).
        proc = subprocess.Popen(
            command,
            stdout=None if verbose else output,
            stderr=None if verbose else subprocess.STDOUT,
            pass_fds=keep_fds,
        )
        with tqdm(desc="materialising", unit="step", disable=not show_bar) as bar:
            while True:
                returncode = proc.poll()  # before reading: once it has exited, every event is written
                run_id = run_id or cli_runs.find_run(instance, key)
                if run_id:
                    entries, cursor = cli_runs.new_events(instance, run_id, cursor)
                    for entry in entries:
                        for text, problem in progress.handle(entry):
                            if show_bar and problem:
                                bar.write(text, file=sys.stderr)
                            elif not show_bar and not verbose:
                                print(text, flush=True)
                    if show_bar:
                        bar.total, bar.n = progress.total, len(progress.done)
                        bar.set_postfix_str((progress.running or "")[:40], refresh=True)
                if returncode is not None:
                    break
                time.sleep(1)
        output.seek(max(0, output.seek(0, 2) - 6000))
        tail = output.read().decode("utf-8", errors="replace")
    return returncode, progress, run_id, tail


def _print_failure(command: str, returncode: int, progress: RunProgress, run_id: str | None, output: str) -> None:
    """Why a run failed, from its events: each failed step with its error, failed checks of ERROR
    severity, the steps that never ran, and where to look. Dagster's own output when no step says."""
    if output and not progress.failures:
        print(output)
    if run_id is None:
        print(
            f"tessera {command}: Dagster exited with {returncode} before it started a run; its output above says why.",
            file=sys.stderr,
        )
        return
    lines = [f"tessera {command}: the Dagster run {run_id} failed (exit {returncode})."]
    lines += ["  - " + text.replace("\n", "\n    ") for text in progress.failures]
    if not_run := progress.not_run():
        more = ", ..." if len(not_run) > 6 else ""
        lines.append(f"  {len(not_run)} step(s) did not run: {', '.join(not_run[:6])}{more}")
    lines.append(
        f"Each step's events, output and errors in full: `make ui`, then http://127.0.0.1:3000/runs/{run_id} "
        f"(or `tessera {command} -v` to stream Dagster's log)."
    )
    print("\n".join(lines), file=sys.stderr)


def _latest_report(reports_dir: Path) -> Path | None:
    pages = sorted(reports_dir.glob("*/index.html"))
    return pages[-1] if pages else None


def _cmd_report(args: argparse.Namespace) -> int:
    from orchestration.lib.settings import export_for_subprocesses

    settings = _settings("report")
    if settings is None:
        return 2
    if args.latest:
        page = _latest_report(settings.reports_dir)
        if page is None:
            print(
                f"tessera report: no report in {settings.reports_dir} yet; run `tessera report` or `make run`.",
                file=sys.stderr,
            )
            return 1
        print(page)
        return 0
    if not settings.warehouse.exists():
        print(f"tessera report: {settings.warehouse} does not exist; run `make run` first.", file=sys.stderr)
        return 2
    export_for_subprocesses(settings)
    from orchestration.defs.exports.report import build_report, champion_calibration
    from orchestration.lib.warehouse import connect

    calibration = champion_calibration(lambda text: print(f"tessera report: {text}", file=sys.stderr))
    try:
        with connect(settings.warehouse, read_only=True) as con:
            page = build_report(con, settings.reports_dir, calibration)
    except (ValueError, RuntimeError) as exc:
        print(f"tessera report: {exc}", file=sys.stderr)
        return 1
    print(page.path)
    return 0


def _config_problems(settings) -> list[str]:
    """Every problem in the sources config and the segment definitions, as printable lines."""
    from orchestration.defs.ingest.sources_config import SourcesConfigError, cached_sources_config
    from orchestration.defs.segments.catalog import SegmentConfigError
    from orchestration.defs.segments.loading import segment_catalog

    problems = []
    try:
        cached_sources_config(settings.sources_config)
    except SourcesConfigError as exc:
        problems.append(f"Sources config ({settings.sources_config}):")
        problems += [f"  - {p}" for p in exc.problems]
    try:
        segment_catalog()
    except SegmentConfigError as exc:
        problems.append(f"Segment definitions ({settings.segments_dir}):")
        problems += [f"  - {p}" for p in exc.problems]
        return problems  # the experiments name segments: they are checked once the segments load
    from orchestration.defs.experiments.config import ExperimentConfigError
    from orchestration.defs.experiments.loading import experiment_catalog

    try:
        experiment_catalog()
    except ExperimentConfigError as exc:
        problems.append(f"Experiment definitions ({settings.experiments_dir}):")
        problems += [f"  - {p}" for p in exc.problems]
    return problems


def _cmd_check_config(args: argparse.Namespace) -> int:
    from orchestration.defs.ingest.loaders import SOURCES
    from orchestration.defs.ingest.sources_config import cached_sources_config
    from orchestration.defs.segments.loading import segment_catalog

    settings = _settings("check-config")
    if settings is None:
        return 2
    problems = _config_problems(settings)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("tessera check-config: fix the problems above; nothing was run.", file=sys.stderr)
        return 2
    config = cached_sources_config(settings.sources_config)
    print(f"Sources config: {settings.sources_config or 'none (the landing folders of docs/input_contract.md)'}")
    print(f"Landing folder: {settings.landing_dir}")
    for source in SOURCES:
        files = config.files(source, settings.landing_dir)
        how = (
            f"{files.format}, {len(files.columns)} mapped columns"
            if files.mapped
            else "declared, landing-contract format"
            if source in config.sources
            else "landing folder"
        )
        print(f"  {source:<11} {len(files.files):>4} file(s)  {how}")
    print("Event taxonomy:")
    for name, names in config.taxonomy.model_dump().items():
        print(f"  {name:<18} {', '.join(names)}")
    catalog = segment_catalog()
    print(f"Segments: {len(catalog.segments)} definitions in {settings.segments_dir}")
    realtime = [s for s in catalog.segments.values() if s.spec.refresh == "realtime"]
    if realtime:
        from orchestration.defs.segments.catalog import LIVE_COLUMNS

        print(
            f"  real-time: {', '.join(s.name + (' (stream only)' if s.live_only else '') for s in realtime)}; "
            f"their rules may also read {', '.join(LIVE_COLUMNS)} (docs/realtime.md)"
        )
    from orchestration.defs.experiments.loading import experiment_catalog

    experiments = experiment_catalog()
    print(f"Experiments: {len(experiments)} in {settings.experiments_dir}")
    for spec in experiments.values():
        split = ", ".join(f"{v} {share:.0%}" for v, share in spec.split.items())
        print(
            f"  {spec.name:<28} on {spec.segment}, {spec.mode}, {split}; {spec.metric.kind} in {spec.metric.days} days"
        )
    print("OK: the configuration is valid.")
    return 0


def _print_summary(warehouse: Path, exports_dir: Path) -> None:
    import duckdb

    from orchestration.lib.warehouse import table_exists

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'staging', 'intermediate', 'marts') ORDER BY 1"
        ).fetchall()
        print("Tables:")
        for (name,) in rows:
            print(f"  {name:<45} {con.execute(f'SELECT count(*) FROM {name}').fetchone()[0]:>12,} rows")
        reasons = con.execute(
            "SELECT source, reason_code, count(*) FROM raw.quarantine GROUP BY ALL ORDER BY 1, 3 DESC"
        ).fetchall()
        if reasons:
            print("Quarantined input (raw.quarantine):")
            for source, code, n in reasons:
                print(f"  {source:<12} {code:<22} {n:>8,}")
        issues = (
            con.execute(
                "SELECT source, column_name, reason_code, count(*) FROM raw.field_issues "
                "GROUP BY ALL ORDER BY 1, 4 DESC"
            ).fetchall()
            if table_exists(con, "raw", "field_issues")
            else []
        )
        if issues:
            print("Optional fields nulled, their records kept (raw.field_issues):")
            for source, column, code, n in issues:
                print(f"  {source:<12} {column:<22} {code:<22} {n:>8,}")
        segments = (
            con.execute("""
            SELECT segment_name, segment_type, size, entered, exited, excluded_by_consent, status
            FROM marts.segment_report WHERE as_of = (SELECT max(as_of) FROM marts.segment_report) ORDER BY 1
        """).fetchall()
            if table_exists(con, "marts", "segment_report")
            else []
        )
        if segments:
            print(f"Segments (marts.segment_report; audiences in {exports_dir}):")
            print(f"  {'segment':<40} {'type':<11} {'size':>7} {'entered':>8} {'exited':>7} {'no consent':>10}  status")
            for name, kind, size, entered, exited, excluded, status in segments:
                print(f"  {name:<40} {kind:<11} {size:>7,} {entered:>8,} {exited:>7,} {excluded:>10,}  {status}")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestration.api.app import app_from_environment

    try:
        app = app_from_environment()
    except (ValueError, FileNotFoundError) as exc:
        print(f"tessera api: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port or 8000, log_level="warning", access_log=False)
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings("collector")
    if settings is None:
        return 2
    port = args.port or settings.collector_port
    from orchestration.realtime.collector import app_from_environment

    try:
        app = app_from_environment()
    except ValueError as exc:
        print(f"tessera collector: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(
            f"tessera collector: Redis does not answer ({exc}); start it with `tessera services up redis`.",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False)
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    import signal
    import threading

    import redis

    from orchestration.realtime.processor import processor_from_settings

    settings = _settings("stream")
    if settings is None:
        return 2
    try:
        processor, landing = processor_from_settings(settings, args.consumer)
    except (FileNotFoundError, redis.ConnectionError) as exc:
        print(f"tessera stream: {exc}", file=sys.stderr)
        return 2
    from orchestration.realtime.webhooks import WebhookSender

    try:
        sender = WebhookSender(processor.client, settings.webhooks, settings.webhook_secret.get_secret_value())
    except ValueError as exc:
        print(f"tessera stream: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def send() -> None:  # its own thread: a slow receiver never holds up the stream
        while not stop.is_set():
            sender.step()

    if settings.webhooks:
        threading.Thread(target=send, name="webhooks", daemon=True).start()
    print(
        f"tessera stream: processing {settings.redis_url} ({len(processor.segments)} real-time segments, "
        f"{len(settings.webhooks)} webhooks)",
        flush=True,
    )
    from orchestration.realtime import broker

    trimmed_at = 0.0
    try:
        while not stop.is_set():
            busy = processor.step() + landing.step(block_ms=0)
            if time.monotonic() - trimmed_at > 60:  # the stream keeps a day of what every group has taken
                for stream in (broker.EVENTS, broker.CHANGES):
                    broker.trim(processor.client, stream, broker.KEEP_S, int(time.time() * 1000))
                trimmed_at = time.monotonic()
            if args.close_day and not busy:
                sizes = processor.close_day(args.close_day)
                print(f"tessera stream: closed {args.close_day}: {sizes}", flush=True)
                break
    except KeyboardInterrupt:
        stop.set()
    print(f"tessera stream: stopped; {processor.stats}", flush=True)
    return 0


def _cmd_why(args: argparse.Namespace) -> int:
    from orchestration.defs.segments.catalog import SegmentConfigError
    from orchestration.defs.segments.explain import ExplainError, explain, render, resolve_person
    from orchestration.defs.segments.loading import segment_catalog
    from orchestration.lib.warehouse import connect

    settings = _settings("why")
    if settings is None:
        return 2
    warehouse = settings.warehouse
    if not warehouse.exists():
        print(f"tessera why: {warehouse} does not exist; run `make run` first.", file=sys.stderr)
        return 2
    try:
        with connect(warehouse, read_only=True) as con:
            person = resolve_person(con, args.identifier_type, args.identifier)
            result = explain(con, segment_catalog(), person, args.segment)
    except (ExplainError, SegmentConfigError, RuntimeError) as exc:
        print(f"tessera why: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str) if args.json else render(result))
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    if _settings("services") is None:  # orchestration.services reads them when imported
        return 2
    from orchestration import services

    try:
        if args.action == "up":
            started = services.up(args.names or None)
            print(f"started: {', '.join(started) or 'nothing (all were running)'}")
        elif args.action == "down":
            stopped = services.down(args.names or None)
            print(f"stopped: {', '.join(stopped) or 'nothing (none was running)'}")
        for name, pid in services.status().items():
            print(f"  {name:<13} {'pid ' + str(pid) if pid else 'stopped'}")
    except services.ServiceError as exc:
        print(f"tessera services: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_spark_build(args: argparse.Namespace) -> int:
    from orchestration.lib import spark
    from orchestration.lib.dbt_subprocess import dbt_target
    from orchestration.lib.settings import export_for_subprocesses

    settings = _settings("spark-build")
    if settings is None:
        return 2
    if not settings.warehouse.exists():
        print(f"tessera spark-build: {settings.warehouse} does not exist; run `make run` first.", file=sys.stderr)
        return 2
    export_for_subprocesses(settings)
    dbt_args = ["build", "--exclude", "test_type:unit", *(["--full-refresh"] if args.full_refresh else [])]
    try:
        with dbt_target("spark_build", settings.warehouse) as target_path:
            result = spark.dbt_on_spark(settings.warehouse, dbt_args, target_path=target_path)
    except (spark.SparkUnavailableError, RuntimeError) as exc:
        print(f"tessera spark-build: {exc}", file=sys.stderr)
        return 1
    print(result.stdout.strip().splitlines()[-1])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera user-segmentation platform.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = sub.add_parser(
        "generate",
        help="write realistic, messy sample data and its ground truth",
        description="Write sample data to the landing contract (docs/input_contract.md) plus a ground-truth folder.",
    )
    gen.add_argument("--persons", type=_positive, default=2000, help="number of simulated persons (default 2000)")
    gen.add_argument(
        "--out", type=Path, default=Path("data/landing"), help="landing folder to write (default data/landing)"
    )
    gen.add_argument("--truth", type=Path, default=None, help="ground-truth folder (default: truth/ beside --out)")
    gen.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same files")
    gen.add_argument("--as-of", type=_date, default=dt.date(2026, 10, 31), help="last day of data (default 2026-10-31)")
    gen.add_argument("--history-days", type=_positive, default=180, help="days of history before --as-of")
    gen.add_argument("--workers", type=_positive, default=None, help="processes (default: up to 2)")
    gen.add_argument(
        "--messy",
        action="store_true",
        help="write the messy corpus instead (orchestration/sample_data/messy.py): what real exports hold",
    )
    gen.set_defaults(func=_cmd_generate)
    run = sub.add_parser(
        "run",
        help="materialise every asset (writes sample data first when the landing zone is empty)",
        description="Run the whole pipeline with the settings from the environment (docs/settings.md).",
    )
    run.add_argument(
        "--sample-persons",
        type=_positive,
        default=2000,
        help="persons to generate when the landing folder is empty (default 2000)",
    )
    run.add_argument(
        "--day",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="rebuild the events of one daily partition (and the lookback before it) instead of all "
        "days; everything downstream is rebuilt as usual",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="stream Dagster's log instead of a summary")
    run.set_defaults(func=_cmd_run)
    erase = sub.add_parser(
        "erase",
        help="apply the erasure requests in privacy/ now, and nothing else",
        description="Load privacy/*.csv and erase each person from every table, export and file "
        "the pipeline writes, without waiting for (or depending on) any other step.",
    )
    erase.add_argument("-v", "--verbose", action="store_true", help="stream Dagster's log instead of a summary")
    erase.set_defaults(func=_cmd_erase)
    why = sub.add_parser(
        "why",
        help="explain why a person is (or is not) in a segment",
        description="Resolve an identifier to its person and show each clause of the segment's rule "
        "with its value for them (cluster: distance to centroid; propensity: score and "
        "top features).",
    )
    why.add_argument("identifier_type", help="person_id, anonymous_id, user_id, customer_id, email or phone")
    why.add_argument("identifier", help="the identifier's value")
    why.add_argument("segment", help="the segment name (see marts.segment_report)")
    why.add_argument("--json", action="store_true", help="print JSON instead of text")
    why.set_defaults(func=_cmd_why)
    report = sub.add_parser(
        "report",
        help="write the segment report page and print its path",
        description="Build data/reports/<as_of>/index.html (TESSERA_REPORTS_DIR) from the "
        "warehouse and MLflow, as the exports/segment_report_page asset does, and "
        "print its path. Exit 0 on success, 1 when there is nothing to report yet, "
        "2 for a setting or a missing warehouse.",
    )
    report.add_argument("--latest", action="store_true", help="only print the path of the newest existing page")
    report.set_defaults(func=_cmd_report)
    check = sub.add_parser(
        "check-config",
        help="validate the sources config and segment definitions; run nothing",
        description="Check TESSERA_SOURCES_CONFIG (keys, required mappings, globs, expressions "
        "tried on a sample of each file) and the segment definitions, and print what "
        "each ingestion step would read. Exit 0 when valid, 2 otherwise.",
    )
    check.set_defaults(func=_cmd_check_config)
    api = sub.add_parser(
        "api",
        help="serve the read-only lookup API (needs TESSERA_API_TOKEN)",
        description="Serve GET /v1/identities/{type}/{value}/segments, /v1/segments and "
        "/v1/segments/{name}; OpenAPI at /docs and /openapi.json.",
    )
    _serving(api, "8000")
    api.set_defaults(func=_cmd_api)
    col = sub.add_parser(
        "collector",
        help="serve the Segment-compatible collector (needs TESSERA_COLLECTOR_WRITE_KEY and Redis)",
        description="POST /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/alias and /v1/batch, as Segment's "
        "HTTP Tracking API; each message is checked and appended to the Redis stream (docs/realtime.md).",
    )
    _serving(col, "TESSERA_COLLECTOR_PORT, 8090")
    col.set_defaults(func=_cmd_collector)
    st = sub.add_parser(
        "stream",
        help="process the collector's stream: live state, real-time segments, landing files",
        description="Consume the Redis stream: live state and the membership of the segments with "
        "`refresh: realtime`, and the landing files that the daily run replays (docs/realtime.md).",
    )
    st.add_argument("--consumer", default="processor", help="this process's name in the consumer groups")
    st.add_argument(
        "--close-day",
        metavar="YYYY-MM-DD",
        type=dt.date.fromisoformat,
        help="process what the stream holds, close that day (every person's real-time segments at its end, "
        "for realtime/reconciliation) and exit: for a day replayed through the collector after the fact",
    )
    st.set_defaults(func=_cmd_stream)
    sb = sub.add_parser(
        "spark-build",
        help="build the dbt project on Spark from the DuckDB warehouse's sources",
        description="Publish the tables dbt reads as sources (raw.*, the identity graph, the scores) "
        "from the DuckDB warehouse to the Parquet lake (TESSERA_LAKE_DIR), register them "
        "in Spark, and run `dbt build --target spark` (unit tests stay on DuckDB). Needs a "
        "Thrift server: `make services-up`.",
    )
    sb.add_argument("--full-refresh", action="store_true", help="rebuild the incremental models from scratch")
    sb.set_defaults(func=_cmd_spark_build)
    svc = sub.add_parser(
        "services",
        help="start, stop or list the local PostgreSQL, MLflow server and Spark cluster",
        description="Local services for the production profile (PostgreSQL, an MLflow server on it) "
        "the Spark engine (master, worker, Thrift server) and Redis for the real-time path. PIDs are kept in "
        "data/services/ and `down` stops exactly those.",
    )
    svc.add_argument("action", choices=["up", "down", "status"])
    svc.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="postgres, mlflow, spark-master, spark-worker, spark-thrift, redis, or the groups 'production', "
        "'spark' and 'realtime' (default: all)",
    )
    svc.set_defaults(func=_cmd_services)
    return parser


def _serving(parser: argparse.ArgumentParser, default_port: str) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default {default_port})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
