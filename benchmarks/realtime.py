"""The real-time path under load, on loopback: collector, Redis, processor and the lookup API.

    .venv/bin/python benchmarks/realtime.py --warehouse data/bench/p100000/scale/warehouse.duckdb

Starts its own Redis (`tessera services up redis`, in a temporary services folder), `tessera
collector`, `tessera stream` and `tessera api` on the given warehouse (built by a daily run), then:
1. throughput: 5,000 events/s for 60 s, open loop, in batches of 100 (Segment's SDKs batch too),
   from the persons of the warehouse's identity map and new visitors; sent = stored = processed, the
   processor's largest lag while sending, and how long it needed after the last send;
2. latency at 2,000 events/s: beside that load, a probe every 50 ms from a new visitor whose one
   event (a cart worth 300) puts them in `high_value_cart`; from the moment the probe is sent to the
   moment its entry is on `tessera:segment_changes` (written in the processor's transaction with
   the membership): p50, p99, max;
3. the lookup API at 500 requests/s over the warehouse's identifiers, the live overlay on
   (benchmarks/segments_api.py's open loop);
4. resident memory of each process at the end.
Figures go to benchmarks/results/realtime.json.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from benchmarks.segments_api import TOKEN, lookup_paths, open_loop  # noqa: E402

WRITE_KEY = "benchmark-write-key-0123456789"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
EVENTS = ("Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Order Completed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def wait_http(port: int, path: str = "/health", seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


class Load:
    """Open-loop senders: `rate` events/s in batches of `batch`, for `seconds`."""

    def __init__(self, port: int, anonymous_ids: list[str], rate: float, seconds: float, batch: int = 100):
        self.port, self.ids, self.rate, self.seconds, self.batch = port, anonymous_ids, rate, seconds, batch
        self.sent = self.accepted = 0
        self.ack_ms: list[float] = []
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()

    def body(self, rng: random.Random) -> bytes:
        now = dt.datetime.now(dt.UTC).isoformat()
        batch = []
        for _ in range(self.batch):
            event = rng.choice(EVENTS)
            anonymous = rng.choice(self.ids) if rng.random() < 0.9 else f"new-{rng.randrange(10**7)}"
            properties = {"product_id": f"SKU-{rng.randrange(500)}", "price": rng.randrange(5, 80), "quantity": 1}
            batch.append(
                {
                    "type": "track",
                    "event": event,
                    "messageId": str(uuid.uuid4()),
                    "anonymousId": anonymous,
                    "timestamp": now,
                    "properties": properties,
                }
            )
        return json.dumps({"batch": batch}).encode()

    def run(self, senders: int = 8) -> None:
        interval = senders * self.batch / self.rate
        start = time.perf_counter() + 0.2

        def sender(k: int) -> None:
            rng = random.Random(k)
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            i = 0
            while (scheduled := start + (i + k / senders) * interval) - start < self.seconds:
                body = self.body(rng)
                if (delay := scheduled - time.perf_counter()) > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                try:
                    conn.request("POST", "/v1/batch", body=body, headers={"Authorization": AUTH})
                    response = conn.getresponse()
                    reply = json.loads(response.read())
                    ok = response.status == 200
                except OSError as exc:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    ok, reply = False, {"error": type(exc).__name__}
                with self._lock:
                    self.sent += self.batch
                    self.ack_ms.append((time.perf_counter() - began) * 1000)
                    if ok:
                        self.accepted += reply["accepted"]
                    else:
                        key = str(reply)[:80]
                        self.errors[key] = self.errors.get(key, 0) + 1
                i += 1

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def group_state(client: redis.Redis) -> tuple[int, int]:
    """(entries the processor has not finished: lag + pending, stream length)."""
    group = next(g for g in client.xinfo_groups("tessera:events") if g["name"] == "processor")
    length = client.xlen("tessera:events")
    return length - (group["entries-read"] or 0) + group["pending"], length


def throughput(client: redis.Redis, port: int, ids: list[str], rate: float, seconds: float) -> dict:
    load = Load(port, ids, rate, seconds)
    lags, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            lags.append(group_state(client)[0])
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = time.perf_counter()
    load.run()
    sent_s = time.perf_counter() - began
    while group_state(client)[0]:
        time.sleep(0.05)
    drained_s = time.perf_counter() - began - sent_s
    stop.set()
    watcher.join()
    ack = np.array(load.ack_ms)
    return {
        "target_events_per_s": rate,
        "seconds": seconds,
        "sent": load.sent,
        "accepted": load.accepted,
        "errors": load.errors,
        "send_s": round(sent_s, 1),
        "achieved_send_rate": round(load.sent / sent_s),
        "processor_max_lag": max(lags or [0]),
        "processor_drain_after_send_s": round(drained_s, 2),
        "collector_ack_p50_ms": round(float(np.percentile(ack, 50)), 1),
        "collector_ack_p99_ms": round(float(np.percentile(ack, 99)), 1),
    }


def latency(client: redis.Redis, port: int, ids: list[str], rate: float, seconds: float) -> dict:
    load = Load(port, ids, rate, seconds)
    background = threading.Thread(target=load.run)
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    start_id = (
        client.xinfo_stream("tessera:segment_changes")["last-generated-id"]
        if client.exists("tessera:segment_changes")
        else "0"
    )
    stop = threading.Event()

    def watch() -> None:
        watcher = redis.Redis(port=client.connection_pool.connection_kwargs["port"], decode_responses=True)
        last = start_id
        while not stop.is_set():
            reply = watcher.xread({"tessera:segment_changes": last}, block=200, count=1000)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields["segment"] == "high_value_cart" and fields["change"] == "entered":
                        seen_at.setdefault(fields["person_id"], time.perf_counter())

    watcher = threading.Thread(target=watch)
    watcher.start()
    background.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    probes = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        anonymous = f"probe-{uuid.uuid4().hex[:12]}"
        message = {
            "type": "track",
            "event": "Product Added",
            "messageId": str(uuid.uuid4()),
            "anonymousId": anonymous,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "properties": {"product_id": "SKU-P", "price": 300, "quantity": 1},
        }
        sent_at[anonymous] = time.perf_counter()
        conn.request("POST", "/v1/track", body=json.dumps(message).encode(), headers={"Authorization": AUTH})
        conn.getresponse().read()
        probes += 1
        time.sleep(0.05)
    background.join()
    deadline = time.perf_counter() + 30
    while len(seen_at) < probes and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    watcher.join()
    persons = {client.hget("tessera:rt:ids", f"anonymous_id:{a}"): a for a in sent_at}
    ms = np.array([(seen_at[p] - sent_at[a]) * 1000 for p, a in persons.items() if p in seen_at])
    return {
        "background_events_per_s": rate,
        "probes": probes,
        "probes_seen": int(len(ms)),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "bar": "p99 < 500 ms at 2,000 events/s",
    }


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", type=Path, required=True, help="a warehouse built by a daily run")
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--latency-rate", type=float, default=2000)
    ap.add_argument("--api-rate", type=float, default=500)
    args = ap.parse_args()
    warehouse = args.warehouse.resolve()
    services = Path(tempfile.mkdtemp(prefix="tessera-rt-"))
    redis_port, collector_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "TESSERA_SERVICES_DIR": str(services),
        "TESSERA_REDIS_PORT": str(redis_port),
        "TESSERA_WAREHOUSE": str(warehouse),
        "TESSERA_LANDING_DIR": str(services / "landing"),
        "TESSERA_COLLECTOR_WRITE_KEY": WRITE_KEY,
        "TESSERA_API_TOKEN": TOKEN,
        "TESSERA_API_RATE_LIMIT": "100000/second",  # one token stands for every client here
    }
    tessera = [sys.executable, "-m", "orchestration.cli"]
    subprocess.run([*tessera, "services", "up", "redis"], env=env, check=True)
    processes = {}
    try:
        client = redis.Redis(port=redis_port, decode_responses=True)
        processes["collector"] = subprocess.Popen([*tessera, "collector", "--port", str(collector_port)], env=env)
        wait_http(collector_port)
        started = time.perf_counter()
        processes["stream"] = subprocess.Popen([*tessera, "stream"], env=env, stdout=subprocess.DEVNULL)
        processes["api"] = subprocess.Popen([*tessera, "api", "--port", str(api_port)], env=env)
        wait_http(api_port)
        while not client.exists("tessera:rt:segments"):  # the processor has loaded the warehouse
            time.sleep(0.2)
        stream_start_s = round(time.perf_counter() - started, 1)
        with duckdb.connect(str(warehouse), read_only=True) as con:
            ids = [
                r[0]
                for r in con.execute(
                    "SELECT identifier FROM marts.identity_map WHERE identifier_type = 'anonymous_id'"
                ).fetchall()
            ]
            persons = con.execute("SELECT count(*) FROM marts.segment_attributes").fetchone()[0]
        result = {"warehouse": str(warehouse), "persons": persons, "stream_start_s": stream_start_s}
        result["throughput"] = throughput(client, collector_port, ids, args.rate, args.seconds)
        print(json.dumps(result["throughput"], indent=1), flush=True)
        result["stored"] = client.xlen("tessera:events")
        result["latency"] = latency(client, collector_port, ids, args.latency_rate, 30)
        print(json.dumps(result["latency"], indent=1), flush=True)
        paths = lookup_paths(warehouse)
        open_loop(api_port, paths, args.api_rate, 3)  # warm-up
        result["lookup_api"] = open_loop(api_port, paths, args.api_rate, 30) | {"bar": "p99 < 10 ms at 500 requests/s"}
        print(json.dumps(result["lookup_api"], indent=1), flush=True)
        redis_pid = int((services / "redis.pid").read_text())
        result["rss_mb"] = {name: rss_mb(p.pid) for name, p in processes.items()} | {"redis": rss_mb(redis_pid)}
        result["redis_used_memory_mb"] = round(client.info("memory")["used_memory"] / 1024**2, 1)
    finally:
        for p in processes.values():
            p.terminate()
        for p in processes.values():
            p.wait(timeout=30)
        subprocess.run([*tessera, "services", "down", "redis"], env=env, check=False)
    save_result("realtime", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
