"""The lock a `tessera` run holds: alive while any process holding it lives (the `tessera` process
or its `dagster job execute`), released by the kernel when they are killed."""

from __future__ import annotations

import signal
import subprocess
import sys

from orchestration.lib import cli_runs

# A `tessera` process: takes the lock, hands it to a child as it hands it to `dagster job execute`,
# prints the key and the child's pid, and waits.
TESSERA = """
import subprocess, sys, time
from pathlib import Path
from orchestration.lib import cli_runs
with cli_runs.run_lock(Path(sys.argv[1])) as (key, fd):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(fd,))
    print(key, child.pid, flush=True)
    time.sleep(120)
"""


def test_a_run_is_alive_while_any_of_its_processes_lives_and_found_once_all_are_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", TESSERA, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    key, child_pid = proc.stdout.readline().split()
    try:
        assert cli_runs._dead_keys(tmp_path) == []
        proc.send_signal(signal.SIGKILL)  # `tessera` dies; its `dagster job execute` runs on
        proc.wait(timeout=10)
        assert cli_runs._dead_keys(tmp_path) == []
        subprocess.run(["kill", "-KILL", child_pid], check=True)
        for _ in range(100):  # the kernel lets go once the child is reaped (by init)
            if dead := cli_runs._dead_keys(tmp_path):
                break
            subprocess.run(["sleep", "0.1"])
        assert dead == [key]
        assert not (tmp_path / "cli_runs" / f"{key}.lock").exists() and cli_runs._dead_keys(tmp_path) == []
    finally:
        proc.kill()
        subprocess.run(["kill", "-KILL", child_pid])


def test_a_run_that_ends_leaves_no_lock(tmp_path):
    with cli_runs.run_lock(tmp_path) as (key, _):
        assert (tmp_path / "cli_runs" / f"{key}.lock").exists() and cli_runs._dead_keys(tmp_path) == []
    assert list((tmp_path / "cli_runs").iterdir()) == []
