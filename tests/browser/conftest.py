"""A real deployment for the browser tests: one `tessera run` on generated data, then `dagster dev`
and the MLflow UI on loopback, driven by Playwright in Debian's headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """The server and every child it started (dagster dev runs a webserver, a daemon, code servers)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _serve(command: list[str], env: dict, url: str, log: Path, timeout: float):
    handle = log.open("w")
    process = subprocess.Popen(
        command,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_for(url, process, log, timeout)
        yield process
    finally:
        _stop(process)
        handle.close()


@pytest.fixture(scope="module")
def deployment(sample, tmp_path_factory) -> dict:
    """Settings of a materialised deployment (warehouse, Dagster instance, MLflow store, report)."""
    root = tmp_path_factory.mktemp("deployment")
    shutil.copytree(sample.landing, root / "landing")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TESSERA_LANDING_DIR": str(root / "landing"),
        "TESSERA_WAREHOUSE": str(root / "warehouse.duckdb"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "TESSERA_EXPORTS_DIR": str(root / "exports"),
        "TESSERA_REPORTS_DIR": str(root / "reports"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    env.pop("TESSERA_AS_OF", None)
    run = subprocess.run([str(BIN / "tessera"), "run"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return {"env": env, "root": root, "run_output": run.stdout}


@pytest.fixture(scope="module")  # servers stop when the browser tests are done
def dagster_url(deployment):
    port = _free_port()
    log = deployment["root"] / "dagster_dev.log"
    for _ in _serve(
        [str(BIN / "dagster"), "dev", "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)],
        deployment["env"],
        f"http://127.0.0.1:{port}/server_info",
        log,
        timeout=180,
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")  # servers stop when the browser tests are done
def mlflow_url(deployment):
    port = _free_port()
    log = deployment["root"] / "mlflow_ui.log"
    store = deployment["env"]["MLFLOW_TRACKING_URI"]
    for _ in _serve(
        [
            str(BIN / "mlflow"),
            "ui",
            "--backend-store-uri",
            store,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        deployment["env"],
        f"http://127.0.0.1:{port}/health",
        log,
        timeout=120,
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")  # Playwright's loop must be gone before other modules run Dagster
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it (make browser-deps)."
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 2000})
    tab = context.new_page()
    yield tab
    context.close()
