"""Segment membership build time and lookup-API latency on a generated tier.

    .venv/bin/python benchmarks/segments_api.py --persons 100000

1. Materialises the pipeline with the ML and segment assets into <workdir>/segments.duckdb
   (skipped with --reuse when that file exists).
2. Times build_membership (every shipped segment, history, report, overlap) on the warehouse: a
   first build on empty history, then a re-run of the same as_of.
3. Starts `tessera api` on 127.0.0.1 and measures lookups by random identifiers of every type:
   - open loop at a fixed rate (default 500 requests/s) from 8 keep-alive connections; latency is
     counted from each request's scheduled time, so a slow server cannot hide its queue;
   - wrk (Debian's package; installed with apt-get when missing) at saturation, for the ceiling.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402

TOKEN = "benchmark-token-0123456789"


def membership_times(warehouse: Path) -> dict:
    from orchestration.defs.segments.loading import segment_catalog
    from orchestration.defs.segments.membership import build_membership, reset_history
    from orchestration.lib.warehouse import connect

    catalog = segment_catalog()
    with connect(warehouse) as con:
        reset_history(con)
        started = time.perf_counter()
        report = build_membership(con, catalog)
        first = time.perf_counter() - started
        started = time.perf_counter()
        build_membership(con, catalog)
        rerun = time.perf_counter() - started
        members = con.execute("SELECT count(*) FROM marts.segment_membership").fetchone()[0]
    return {
        "persons": report.persons,
        "segments": len(report.segments),
        "memberships": members,
        "first_build_s": round(first, 2),
        "rerun_same_as_of_s": round(rerun, 2),
    }


def lookup_paths(warehouse: Path, n: int = 20000, seed: int = 7) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(f"""SELECT identifier_type, identifier FROM marts.identity_map
                               USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({int(seed)})""").fetchall()
    rng = random.Random(seed)
    paths = [f"/v1/identities/{t}/{v}/segments" for t, v in rows]
    paths += [f"/v1/identities/customer_id/NOPE{rng.randrange(10**9)}/segments" for _ in range(n // 20)]  # 404s
    rng.shuffle(paths)
    return paths


def start_api(warehouse: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TESSERA_WAREHOUSE": str(warehouse), "TESSERA_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "api", "--port", str(port)], env=env)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not start")


def open_loop(port: int, paths: list[str], rate: float, seconds: float, connections: int = 8) -> dict:
    """Requests at fixed times; latency from the scheduled time (no coordinated omission)."""
    interval = connections / rate
    latencies, statuses, lock = [], {}, threading.Lock()
    start = time.perf_counter() + 0.5

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        i, mine = 0, []
        while True:
            scheduled = start + (i + k / connections) * interval
            if scheduled - start > seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", paths[(i * connections + k) % len(paths)], headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - scheduled, response.status))
            i += 1
        with lock:
            latencies.extend(m[0] for m in mine)
            for _, s in mine:
                statuses[s] = statuses.get(s, 0) + 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.array(latencies) * 1000
    return {
        "target_rps": rate,
        "achieved_rps": round(len(ms) / seconds, 1),
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "statuses": statuses,
    }


def wrk(port: int, paths: list[str], seconds: int) -> dict:
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        quoted = ",".join(f'"{p}"' for p in paths[:5000])
        script.write(
            f"paths = {{{quoted}}}\ni = 0\nrequest = function()\n  i = i % #paths + 1\n"
            f'  return wrk.format("GET", paths[i], {{["Authorization"] = "Bearer {TOKEN}"}})\nend\n'
        )
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", "8", "-d", f"{seconds}s", "--latency", "-s", script.name, f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    return {
        "requests_per_s": float(lines["Requests/sec:"][0]),
        "p50": lines["50%"][0],
        "p99": lines["99%"][0],
        "raw": out,
    }


def main() -> int:
    ap = tier_parser(__doc__, 100_000)
    ap.add_argument("--reuse", action="store_true", help="reuse <workdir>/segments.duckdb when it exists")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    work = tier_workdir(args)
    landing, _ = ensure_generated(work, args.persons)
    warehouse = work / "segments.duckdb"
    pipeline = None
    if not (args.reuse and warehouse.exists()):
        warehouse.unlink(missing_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'segments-mlflow.db'}"
        pipeline = run_pipeline(landing, warehouse, with_ml=True)
    os.environ["TESSERA_WAREHOUSE"] = str(warehouse)
    membership = membership_times(warehouse)
    paths = lookup_paths(warehouse)
    port = 8765
    api = start_api(warehouse, port)
    try:
        open_loop(port, paths, args.rate, 3)  # warm-up
        fixed = open_loop(port, paths, args.rate, args.seconds)
        ceiling = wrk(port, paths, int(args.seconds))
    finally:
        api.send_signal(signal.SIGINT)
        api.wait(timeout=20)
    save_result(
        f"segments_api_p{args.persons}",
        {
            "persons": args.persons,
            "pipeline": pipeline,
            "membership": membership,
            "api_open_loop": fixed,
            "api_wrk_saturation": {k: v for k, v in ceiling.items() if k != "raw"},
            "bar": "p99 < 10 ms at 500 requests/s",
        },
    )
    print(ceiling["raw"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
