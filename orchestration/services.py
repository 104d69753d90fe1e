"""Local services for the production profile, the Spark engine and the real-time path, started from packages:

- PostgreSQL (Debian's postgresql): the Dagster instance (dagster-postgres) and the MLflow backend;
- an MLflow tracking server backed by that PostgreSQL;
- a Spark standalone cluster from the pyspark wheel: master, worker and a Thrift server (dbt-spark's
  `method: thrift`) with an embedded Derby metastore;
- Redis (Debian's redis-server): the real-time path's streams and live state (docs/realtime.md).

    tessera services up [NAME ...]     # all by default, in dependency order; waits until each answers
    tessera services down [NAME ...]
    tessera services status

Each started process's PID is written to data/services/<name>.pid, and `down` stops exactly that PID
(with its process group), so nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.lib.settings import load_settings

# Read when this module is imported (docs/settings.md); a bad value raises SettingsError here.
SERVICES_DIR = load_settings().services_dir
POSTGRES_BIN = load_settings().postgres_bin


class ServiceError(RuntimeError):
    """A service could not start or stop; the message says why and where its log is."""


@dataclass(frozen=True)
class Ports:
    postgres: int
    mlflow: int
    spark_master: int
    spark_master_ui: int
    spark_worker_ui: int
    spark_thrift: int
    redis: int = 6390

    @classmethod
    def from_env(cls) -> Ports:
        """The ports of the process's settings (TESSERA_*_PORT)."""
        settings = load_settings()
        return cls(
            postgres=settings.postgres_port,
            mlflow=settings.mlflow_port,
            spark_master=settings.spark_master_port,
            spark_master_ui=settings.spark_master_ui_port,
            spark_worker_ui=settings.spark_worker_ui_port,
            spark_thrift=settings.spark_port,
            redis=settings.redis_port,
        )


def postgres_url(database: str, ports: Ports | None = None) -> str:
    port = (ports or Ports.from_env()).postgres
    return f"postgresql+psycopg2://tessera@127.0.0.1:{port}/{database}"


# --- process bookkeeping --------------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return SERVICES_DIR / f"{name}.pid"


def log_file(name: str) -> Path:
    return SERVICES_DIR / "logs" / f"{name}.log"


_spawned: dict[int, subprocess.Popen] = {}


def _alive(pid: int) -> bool:
    if pid in _spawned:  # our own child: poll() reaps it once it has exited
        return _spawned[pid].poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(name: str) -> int | None:
    """The recorded PID of a service, if that process is still alive."""
    try:
        pid = int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def spawn(
    name: str, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, user: str | None = None
) -> int:
    log = log_file(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            user=user,
            start_new_session=True,
        )
    _spawned[process.pid] = process  # outlives this call on purpose; kept so that it is not reported as leaked
    pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def wait_until(name: str, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_pid(name) is None:
            raise ServiceError(f"{name} exited while starting; see {log_file(name)}")
        if ready():
            return
        time.sleep(1)
    raise ServiceError(f"{name} did not answer within {timeout_s:.0f} s; see {log_file(name)}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _require_free(port: int, variable: str) -> None:
    if port_open(port):
        raise ServiceError(
            f"Port {port} on 127.0.0.1 is taken by a process that `tessera services` did not start: "
            f"stop it, or choose another port with {variable}."
        )


# PostgreSQL's SIGTERM waits for every client to disconnect; SIGINT is its fast, clean shutdown.
STOP_SIGNALS = {"postgres": signal.SIGINT}


def stop(names: list[str], timeout_s: float = 20) -> list[str]:
    """Stop the recorded PIDs (and the process groups they lead) of `names` together: their stop signal,
    then SIGKILL for any still alive after the timeout. Returns the names that were running."""
    running = {name: pid for name in names if (pid := running_pid(name)) is not None}
    for sig in ("stop", signal.SIGKILL):
        alive = {name: pid for name, pid in running.items() if running_pid(name) is not None}
        for name, pid in alive.items():
            try:
                os.killpg(pid, STOP_SIGNALS.get(name, signal.SIGTERM) if sig == "stop" else sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(running_pid(name) is not None for name in alive):
            time.sleep(0.5)
    for name in names:
        pid_file(name).unlink(missing_ok=True)
    return list(running)


# --- the services ---------------------------------------------------------------------------------


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root; Debian's package brings a `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "PostgreSQL will not run as root and there is no 'postgres' user: install Debian's "
            "postgresql package (make services-deps) or run as an ordinary user."
        ) from None
    return "postgres"


def start_postgres(ports: Ports) -> None:
    if not (POSTGRES_BIN / "postgres").exists():
        raise ServiceError(
            f"PostgreSQL is not installed at {POSTGRES_BIN}: run `make services-deps` (Debian's "
            "postgresql package), or set TESSERA_POSTGRES_BIN to its bin folder."
        )
    _require_free(ports.postgres, "TESSERA_POSTGRES_PORT")
    user = _postgres_user()
    data = SERVICES_DIR / "postgres"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user)
        init = subprocess.run(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "tessera",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            user=user,
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise ServiceError(
                f"initdb could not create {data} (as user {user or 'current'}): "
                f"{init.stderr.strip() or init.stdout.strip()}"
            )
    spawn(
        "postgres",
        [
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(ports.postgres),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={data}",
        ],
        user=user,
    )
    wait_until("postgres", lambda: port_open(ports.postgres) and _pg_accepts(ports), 60)
    for database in ("dagster", "mlflow"):
        _ensure_database(ports, database)


def pg_connect(database: str, ports: Ports | None = None):
    """A psycopg2 connection to `database` on the local PostgreSQL, as the `tessera` role."""
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1", port=(ports or Ports.from_env()).postgres, user="tessera", dbname=database
    )


def _pg_accepts(ports: Ports) -> bool:
    import psycopg2

    try:
        pg_connect("postgres", ports).close()
    except psycopg2.OperationalError:
        return False
    return True


def _ensure_database(ports: Ports, name: str) -> None:
    con = pg_connect("postgres", ports)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()


def start_mlflow(ports: Ports) -> None:
    _require_free(ports.mlflow, "TESSERA_MLFLOW_PORT")
    artifacts = SERVICES_DIR / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    spawn(
        "mlflow",
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            postgres_url("mlflow", ports),
            "--artifacts-destination",
            artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports.mlflow),
            "--workers",
            "1",
        ],
        env={"MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    wait_until("mlflow", lambda: _http_ok(f"http://127.0.0.1:{ports.mlflow}/health"), 120)


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def spark_home() -> Path:
    try:
        import pyspark
    except ImportError:
        raise ServiceError("pyspark is not installed: run `make install`.") from None
    return Path(pyspark.__file__).parent


def _spark_env() -> dict[str, str]:
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        raise ServiceError("Spark needs Java 17: run `make services-deps` (Debian's openjdk-17-jre-headless).")
    logs = SERVICES_DIR / "spark" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(logs),
        "SPARK_WORKER_DIR": str(SERVICES_DIR / "spark" / "work"),
        "SPARK_NO_DAEMONIZE": "1",
        "PYSPARK_PYTHON": sys.executable,
    }


def start_spark_master(ports: Ports) -> None:
    _require_free(ports.spark_master, "TESSERA_SPARK_MASTER_PORT")
    spawn(
        "spark-master",
        [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports.spark_master),
            "--webui-port",
            str(ports.spark_master_ui),
        ],
        env=_spark_env(),
    )
    wait_until("spark-master", lambda: port_open(ports.spark_master), 90)


def start_spark_worker(ports: Ports) -> None:
    settings = load_settings()
    spawn(
        "spark-worker",
        [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            "127.0.0.1",
            "--cores",
            settings.spark_worker_cores,
            "--memory",
            settings.spark_worker_memory,
            "--webui-port",
            str(ports.spark_worker_ui),
            f"spark://127.0.0.1:{ports.spark_master}",
        ],
        env=_spark_env(),
    )
    wait_until("spark-worker", lambda: _alive_workers(ports) > 0, 90)


def _alive_workers(ports: Ports) -> int:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.spark_master_ui}/json/", timeout=2) as response:
            return sum(w.get("state") == "ALIVE" for w in json.load(response).get("workers", []))
    except (OSError, ValueError):
        return 0


def spark_warehouse_dir() -> Path:
    return SERVICES_DIR / "spark" / "warehouse"


def start_spark_thrift(ports: Ports) -> None:
    _require_free(ports.spark_thrift, "TESSERA_SPARK_PORT")
    metastore = SERVICES_DIR / "spark" / "metastore"
    metastore.mkdir(parents=True, exist_ok=True)
    # The Thrift server is the Spark driver that dbt talks to; its executors run on the worker.
    # dbt sends many short queries: the JIT's optimising tier and a parallel GC cost more CPU than they
    # return here (a full dbt run of the test sample: 262 -> 153 CPU seconds, 143 -> 92 s).
    settings = load_settings()
    java_options = settings.spark_java_options
    spawn(
        "spark-thrift",
        [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            f"spark://127.0.0.1:{ports.spark_master}",
            "--class",
            "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
            "--name",
            "tessera-thrift",
            "--driver-memory",
            settings.spark_driver_memory,
            "--executor-memory",
            settings.spark_executor_memory,
            "--conf",
            f"spark.sql.warehouse.dir={spark_warehouse_dir()}",
            "--conf",
            "spark.sql.session.timeZone=UTC",
            "--conf",
            "spark.sql.shuffle.partitions=8",
            "--conf",
            f"spark.driver.extraJavaOptions=-Dderby.system.home={metastore} {java_options}",
            "--conf",
            f"spark.executor.extraJavaOptions={java_options}",
            "--hiveconf",
            f"hive.server2.thrift.port={ports.spark_thrift}",
            "--hiveconf",
            "hive.server2.thrift.bind.host=127.0.0.1",
            "--hiveconf",
            f"javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={metastore}/metastore_db;create=true",
            "spark-internal",
        ],
        env=_spark_env(),
        cwd=metastore,
    )
    wait_until("spark-thrift", lambda: port_open(ports.spark_thrift) and _thrift_answers(ports), 180)


def _thrift_answers(ports: Ports) -> bool:
    from pyhive import hive

    try:
        con = hive.connect(host="127.0.0.1", port=ports.spark_thrift, username="tessera")
        try:
            cursor = con.cursor()
            cursor.execute("SELECT 1")
            return cursor.fetchall() == [(1,)]
        finally:
            con.close()
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False


REDIS_SERVER = Path("/usr/bin/redis-server")


def start_redis(ports: Ports) -> None:
    """Every write is appended to the log and fsynced before Redis answers (appendfsync always), so the
    collector acknowledges a message only once it would survive a crash of Redis or the machine."""
    if not REDIS_SERVER.exists():
        raise ServiceError(
            f"Redis is not installed at {REDIS_SERVER}: run `make services-deps` (Debian's redis-server)."
        )
    _require_free(ports.redis, "TESSERA_REDIS_PORT")
    data = SERVICES_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    spawn(
        "redis",
        [
            str(REDIS_SERVER),
            "--port",
            str(ports.redis),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ],
    )
    wait_until("redis", lambda: _redis_answers(ports), 30)


def _redis_answers(ports: Ports) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=ports.redis, socket_timeout=1).ping())
    except redis.RedisError:
        return False


# In start order; `down` goes in reverse.
SERVICES: dict[str, Callable[[Ports], None]] = {
    "postgres": start_postgres,
    "mlflow": start_mlflow,
    "spark-master": start_spark_master,
    "spark-worker": start_spark_worker,
    "spark-thrift": start_spark_thrift,
    "redis": start_redis,
}
GROUPS = {
    "spark": ["spark-master", "spark-worker", "spark-thrift"],
    "production": ["postgres", "mlflow"],
    "realtime": ["redis"],
}


def resolve(names: list[str], with_dependencies: bool = False) -> list[str]:
    wanted: set[str] = set()
    for name in names:
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in SERVICES:
            wanted.add(name)
        else:
            raise ServiceError(f"Unknown service {name!r}: choose from {', '.join([*SERVICES, *GROUPS])}.")
    if with_dependencies and "mlflow" in wanted:
        wanted.add("postgres")
    return [name for name in SERVICES if name in wanted]


def up(names: list[str] | None = None) -> list[str]:
    """Start the services not already running (all when `names` is None); returns the ones started."""
    SERVICES_DIR.mkdir(parents=True, exist_ok=True)
    ports = Ports.from_env()
    started = []
    for name in resolve(list(SERVICES) if names is None else names, with_dependencies=True):
        if running_pid(name) is not None:
            continue
        try:
            SERVICES[name](ports)
        except BaseException:
            stop([name])
            raise
        started.append(name)
    return started


def down(names: list[str] | None = None) -> list[str]:
    """Stop the recorded PIDs of `names` (all when None); returns the ones that were running."""
    return stop(list(reversed(resolve(list(SERVICES) if names is None else names))))


def status() -> dict[str, int | None]:
    return {name: running_pid(name) for name in SERVICES}
