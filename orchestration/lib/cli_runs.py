"""Runs that `tessera run` and `tessera erase` start, and what a killed one leaves behind.

Each run holds a lock file in $DAGSTER_HOME/cli_runs for its whole life, shared by the `tessera`
process and its `dagster job execute`; the kernel lets go of it when both have died, however they
died. A run killed with SIGKILL stays STARTED in Dagster and keeps the DuckDB pool slot of the step
it was in, so every later run would wait for that slot forever. Before it starts, the next run
marks such runs failed and frees their slots: what Dagster's daemon does for the runs it monitors.

While a run goes, `tessera` follows it through the events it writes to the instance's event log
(RunProgress), not through its log text.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

RUN_TAG = "tessera/cli_run"


def _folder(home: Path) -> Path:
    return home / "cli_runs"


@contextlib.contextmanager
def run_lock(home: Path) -> Iterator[tuple[str, int]]:
    """(a key for the run's RUN_TAG, the locked file descriptor to hand to the child process)."""
    folder = _folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    key = uuid.uuid4().hex
    staging = folder / f".{key}.new"
    fd = os.open(staging, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(staging, folder / f"{key}.lock")  # visible only once locked
        yield key, fd
    finally:
        (folder / f"{key}.lock").unlink(missing_ok=True)
        staging.unlink(missing_ok=True)
        os.close(fd)


def _dead_keys(home: Path) -> list[str]:
    """Keys of lock files nobody holds: their runs' processes are gone. Each is removed."""
    folder = _folder(home)
    dead = []
    for path in folder.glob("*.lock") if folder.is_dir() else []:
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:  # its run just ended
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # alive
        finally:
            os.close(fd)
        dead.append(path.stem)
        path.unlink(missing_ok=True)
    return dead


def release_dead_runs(home: Path) -> list[str]:
    """Mark the unfinished runs of killed `tessera` processes failed and free their pool slots;
    returns their run ids."""
    dead = _dead_keys(home)
    if not dead:
        return []
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_TAG: dead}))
        for run in runs:
            if not run.is_finished:
                instance.report_run_failed(
                    run,
                    "The `tessera` process that ran this was killed; the next "
                    "`tessera` command marked it failed and freed its pool slots.",
                )
            # Dagster's own daemon frees slots with this storage call too (dagster/_daemon/monitoring).
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return [run.run_id for run in runs]


def find_run(instance: dg.DagsterInstance, key: str) -> str | None:
    """The id of the run `dagster job execute` created with RUN_TAG `key`, once it exists."""
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(tags={RUN_TAG: key}), limit=1)
    return records[0].dagster_run.run_id if records else None


def _event_types() -> set[dg.DagsterEventType]:
    import dagster as dg

    kind = dg.DagsterEventType
    return {
        kind.ASSET_MATERIALIZATION_PLANNED,
        kind.ASSET_CHECK_EVALUATION_PLANNED,
        kind.STEP_START,
        kind.STEP_SUCCESS,
        kind.STEP_FAILURE,
        kind.STEP_SKIPPED,
        kind.STEP_UP_FOR_RETRY,
        kind.ASSET_MATERIALIZATION,
        kind.ASSET_CHECK_EVALUATION,
        kind.RUN_FAILURE,
    }


def new_events(
    instance: dg.DagsterInstance, run_id: str, cursor: str | None
) -> tuple[list[dg.EventLogEntry], str | None]:
    """The run's events that RunProgress reads, written since `cursor`, and the cursor after them.

    DagsterInstance.get_records_for_run is the one reader of a run's events by type and cursor, what
    Dagster's own UI reads runs with; it is not marked public. This is its only caller, and
    tests/test_private_apis.py pins its signature."""
    entries = []
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=_event_types(), limit=1000)
        entries += [record.event_log_entry for record in page.records]
        cursor = page.cursor if page.records else cursor
        if not page.has_more:
            return entries, cursor


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


def _first_lines(text: str, lines: int = 12) -> str:
    kept = text.strip().splitlines()
    return "\n".join(kept[:lines] + ([f"... ({len(kept) - lines} more lines)"] if len(kept) > lines else []))


def error_text(event: dg.DagsterEvent) -> str:
    """What went wrong in a failed step (or run): a Failure's description, else the exception Dagster
    wrapped, with its type."""
    if event.is_step_failure or event.is_step_up_for_retry:
        data = event.step_failure_data if event.is_step_failure else event.event_specific_data
        if getattr(data, "user_failure_data", None) and data.user_failure_data.description:
            return data.user_failure_data.description
        error = data.error
    else:
        error = event.job_failure_data.error
    # Dagster raises its own error around the user's (DagsterExecutionStepExecutionError, ...).
    while error is not None and error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message.strip() if error is not None else event.message or "no error was recorded"


class RunProgress:
    """A run as its events tell it: which steps are planned, running and done, what each materialised,
    which checks failed and why steps failed. `handle` takes the events in order and returns the lines
    worth printing: (text, whether it reports a problem)."""

    def __init__(self) -> None:
        self.planned: dict[str, None] = {}  # step keys in plan order
        self.started: dict[str, float] = {}
        self.done: dict[str, str] = {}  # step key: succeeded, failed or skipped
        self.assets: dict[str, collections.Counter[str]] = {}  # step key: partitions materialised per asset
        self.checks: dict[str, dict[str, bool]] = {}  # step key: check name: passed
        self.failures: list[str] = []  # what went wrong, one text per failed step, failed check or run error
        self.running: str | None = None

    @property
    def total(self) -> int | None:
        return len(self.planned) or None

    def not_run(self) -> list[str]:
        """Planned steps that never started: a step before them failed (or the run stopped)."""
        return [step for step in self.planned if step not in self.started and step not in self.done]

    def _counted(self, step: str) -> str:
        return f"[{len(self.done)}/{self.total or '?'}] {step}"

    def handle(self, entry: dg.EventLogEntry) -> list[tuple[str, bool]]:
        event = entry.dagster_event
        if event is None:
            return []
        kind, step = event.event_type_value, entry.step_key or event.step_key
        if kind in ("ASSET_MATERIALIZATION_PLANNED", "ASSET_CHECK_EVALUATION_PLANNED"):
            if step:
                self.planned.setdefault(step)
        elif kind == "STEP_START":
            self.started[step] = entry.timestamp
            self.running = step
        elif kind == "ASSET_MATERIALIZATION":
            self.assets.setdefault(step, collections.Counter())[event.asset_key.to_user_string()] += 1
        elif kind == "ASSET_CHECK_EVALUATION":
            check = event.asset_check_evaluation_data
            self.checks.setdefault(step, {})[check.check_name] = check.passed
            if not check.passed:
                why = f": {_first_lines(check.description, 4)}" if check.description else ""
                text = (
                    f"check {check.check_name} on {check.asset_key.to_user_string()} did not pass "
                    f"({check.severity.value}){why}"
                )
                if check.severity.value == "ERROR":
                    self.failures.append(text)
                return [(text, True)]
        elif kind == "STEP_UP_FOR_RETRY":
            return [(f"{step} will be retried: {_first_lines(error_text(event), 3)}", True)]
        elif kind in ("STEP_SUCCESS", "STEP_SKIPPED", "STEP_FAILURE"):
            self.planned.setdefault(step)
            self.done[step] = {"STEP_SUCCESS": "succeeded", "STEP_SKIPPED": "skipped", "STEP_FAILURE": "failed"}[kind]
            took = f" after {_seconds(entry.timestamp - self.started[step])}" if step in self.started else ""
            if self.running == step:
                self.running = None
            if kind == "STEP_FAILURE":
                error = _first_lines(error_text(event))
                self.failures.append(f"step {step} failed{took}: {error}")
                return [(f"{self._counted(step)} FAILED{took}: {error}", True)]
            return [(f"{self._counted(step)} {self.done[step]}{took}{self._outcome(step)}", False)]
        elif (
            kind == "PIPELINE_FAILURE"
            and event.job_failure_data.error is not None
            and "failed" not in self.done.values()
        ):  # a failed step's error is reported already
            text = f"the run failed: {_first_lines(error_text(event))}"
            self.failures.append(text)
            return [(text, True)]
        return []

    def _outcome(self, step: str) -> str:
        assets, checks = self.assets.get(step, {}), self.checks.get(step, {})
        parts = []
        if assets:
            names = ", ".join(assets) if len(assets) <= 3 else f"{len(assets)} assets"
            partitions = max(assets.values())
            parts.append(names + (f" ({partitions} partitions)" if partitions > 1 else ""))
        if 0 < len(checks) <= 3:
            parts += [f"check {name} {'passed' if passed else 'did not pass'}" for name, passed in checks.items()]
        elif checks:
            failed = list(checks.values()).count(False)
            parts.append(f"{len(checks)} checks {f'run, {failed} did not pass' if failed else 'passed'}")
        return f": {'; '.join(parts)}" if parts else ""
