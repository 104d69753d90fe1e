"""Batch and stream agree: the sample's last day replayed through the collector, then reconciled.

    .venv/bin/python benchmarks/realtime_reconcile.py --persons 2000

1. The generated sample (data/bench/p<persons>/) without its last day's event files: a daily run
   up to the day before (TESSERA_AS_OF), models trained.
2. Redis, `tessera collector`; the last day's messages sent to it as Segment's SDKs would, in
   batches of 100 to /v1/batch. The answers count the accepted and quarantined messages.
3. `tessera stream --close-day <last day>`: the processor works through the stream, the landing
   writer rolls it into landing files, and the day is closed (every person's real-time segments
   at its end).
4. The daily run of the last day (its partition, scored with the trained models), which reads the
   collector's landing files, not the original ones.
5. realtime/reconciliation's comparison, by segment; and the replay's completeness: the day's
   messages in raw.events and raw.quarantine against those sent.
Figures go to benchmarks/results/realtime_reconcile_p<persons>.json.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import redis  # noqa: E402

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402

WRITE_KEY = "benchmark-write-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def send(port: int, lines: list[str]) -> dict:
    """Every line as a message of a /v1/batch request; what is not JSON goes as the string it is."""
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = accepted = 0
    reasons: dict[str, int] = {}
    for start in range(0, len(lines), 100):
        batch = []
        for line in lines[start : start + 100]:
            try:
                batch.append(json.loads(line))
            except ValueError:
                batch.append(line)
        conn.request("POST", "/v1/batch", body=json.dumps({"batch": batch}).encode(), headers={"Authorization": auth})
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        sent += len(batch)
        accepted += answer["accepted"]
        for q in answer["quarantined"]:
            reasons[q["reason_code"]] = reasons.get(q["reason_code"], 0) + 1
    return {"sent": sent, "accepted": accepted, "quarantined_by_reason": reasons}


def main() -> int:
    args = tier_parser(__doc__, 2000).parse_args()
    work = tier_workdir(args)
    source, _ = ensure_generated(work, args.persons)
    run = work / "reconcile"
    shutil.rmtree(run, ignore_errors=True)
    landing = run / "landing"
    shutil.copytree(source, landing)
    events = landing / "events"
    last_day = max(p.name[:10] for p in events.iterdir() if p.name[:4].isdigit())
    replay = sorted(events.glob(f"{last_day}-*"))
    lines = [line for path in replay for line in read_lines(path)]
    for path in replay:  # the day comes back through the collector only
        path.unlink()
    day = dt.date.fromisoformat(last_day)
    warehouse = run / "warehouse.duckdb"
    os.environ |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{run / 'mlflow.db'}",
        "TESSERA_EXPORTS_DIR": str(run / "exports"),
        "TESSERA_REPORTS_DIR": str(run / "reports"),
        "TESSERA_AS_OF": str(day - dt.timedelta(days=1)),
    }
    before = run_pipeline(landing, warehouse, with_ml=True)

    services = Path(tempfile.mkdtemp(prefix="tessera-reconcile-"))
    redis_port, collector_port = free_port(), free_port()
    env = {
        **os.environ,
        "TESSERA_SERVICES_DIR": str(services),
        "TESSERA_REDIS_PORT": str(redis_port),
        "TESSERA_WAREHOUSE": str(warehouse),
        "TESSERA_LANDING_DIR": str(landing),
        "TESSERA_COLLECTOR_WRITE_KEY": WRITE_KEY,
    }
    tessera = [sys.executable, "-m", "orchestration.cli"]
    subprocess.run([*tessera, "services", "up", "redis"], env=env, check=True)
    collector = subprocess.Popen([*tessera, "collector", "--port", str(collector_port)], env=env)
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", collector_port, timeout=1).request("GET", "/health")
                break
            except OSError:
                subprocess.run(["sleep", "0.2"], check=True)
        sent = send(collector_port, lines)
        closed = subprocess.run(
            [*tessera, "stream", "--close-day", last_day], env=env, check=True, capture_output=True, text=True
        ).stdout
        print(closed, flush=True)

        os.environ["TESSERA_AS_OF"] = last_day
        after = run_pipeline(landing, warehouse, with_ml=True, partition_key=last_day, train=False)

        from orchestration.defs.segments.loading import segment_catalog
        from orchestration.realtime.reconcile import reconcile

        catalog = segment_catalog()
        both = [n for n, s in catalog.segments.items() if s.spec.refresh == "realtime" and not s.live_only]
        client = redis.Redis(port=redis_port, decode_responses=True)
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = reconcile(con, client, day, both)
            stored = con.execute(
                "SELECT count(*) FROM raw.events WHERE starts_with(source_file, 'events/collector-')"
            ).fetchone()[0]
            quarantined = con.execute(
                "SELECT count(*) FROM raw.quarantine WHERE source = 'events' AND starts_with(file, 'events/collector-')"
            ).fetchone()[0]
        closing = client.hgetall(f"tessera:rt:closing:{last_day}")
    finally:
        collector.terminate()
        collector.wait(timeout=30)
        subprocess.run([*tessera, "services", "down", "redis"], env=env, check=False)
    result = {
        "persons": args.persons,
        "day": last_day,
        "collector": sent,
        "replayed_by_the_daily_run": {"events_loaded": stored, "quarantined": quarantined},
        "stream_closing_sizes": {k: v for k, v in closing.items() if not k.startswith("_")},
        "reconciliation": [
            {"segment": r.segment, "daily": r.daily, "stream": r.stream, "both": r.both, "disagreement": r.disagreement}
            for r in rows
        ],
        "daily_run_before_s": before["run_wall_s"],
        "daily_run_of_the_day_s": after["run_wall_s"],
    }
    print(json.dumps(result, indent=1))
    save_result(f"realtime_reconcile_p{args.persons}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
