"""Runs that `tessera run` and `tessera erase` start, and what a killed one leaves behind.

Each run holds a lock file in $DAGSTER_HOME/cli_runs for its whole life, shared by the `tessera`
process and its `dagster job execute`; the kernel lets go of it when both have died, however they
died. A run killed with SIGKILL stays STARTED in Dagster and keeps the DuckDB pool slot of the step
it was in, so every later run would wait for that slot forever. Before it starts, the next run
marks such runs failed and frees their slots: what Dagster's daemon does for the runs it monitors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

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
                instance.report_run_failed(run, "The `tessera` process that ran this was killed; the next "
                                                "`tessera` command marked it failed and freed its pool slots.")
            # Dagster's own daemon frees slots with this storage call too (dagster/_daemon/monitoring).
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return [run.run_id for run in runs]
