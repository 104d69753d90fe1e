"""The real-time path on real parts: Debian's redis-server started by `tessera services up redis`, the
collector under uvicorn, Segment's own Python SDK, and `tessera stream` killed with SIGKILL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis

from orchestration.defs.ingest.loaders.events import load_events
from orchestration.defs.segments.catalog import load_catalog
from orchestration.lib.warehouse import connect
from orchestration.realtime import broker
from orchestration.realtime.broker import LiveMembership
from orchestration.realtime.landing import LandingWriter
from orchestration.realtime.processor import Processor, Reference, sha256

ROOT = Path(__file__).resolve().parents[2]
WRITE_KEY = "test-write-key-0123456789"
TAXONOMY = {
    "tessera__event_product_viewed": ["Product Viewed"],
    "tessera__event_product_added": ["Product Added"],
    "tessera__event_order_completed": ["Order Completed"],
}
SEGMENTS = """
segments:
  - {name: browsing_now, description: d, owner: o, type: rule, refresh: realtime, rule: rt_events_1h >= 3}
  - {name: high_value_cart, description: d, owner: o, type: rule, refresh: realtime, rule: rt_cart_value > 200}
  - name: cart_abandoners
    description: d
    owner: o
    type: rule
    refresh: realtime
    rule: hours_since(last_add_to_cart_at) >= 24 and (last_order_at is null or last_order_at < last_add_to_cart_at)
  - {name: loyal, description: d, owner: o, type: rule, rule: recency_days <= 30}
"""
SCHEMA = {
    "person_id": "text",
    "as_of": "timestamp",
    "evaluated_at": "timestamp",
    "last_seen_at": "timestamp",
    "last_add_to_cart_at": "timestamp",
    "last_order_at": "timestamp",
    "recency_days": "number",
    "days_since_last_order": "number",
    "personalization_opt_in": "boolean",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    """A Redis of our own, started and stopped by the project's service commands."""
    port = _free_port()
    env = {
        **os.environ,
        "TESSERA_SERVICES_DIR": str(tmp_path_factory.mktemp("services")),
        "TESSERA_REDIS_PORT": str(port),
    }
    tessera = [sys.executable, "-m", "orchestration.cli", "services"]
    subprocess.run([*tessera, "up", "redis"], env=env, check=True, cwd=ROOT, timeout=60)
    yield port
    subprocess.run([*tessera, "down", "redis"], env=env, check=True, cwd=ROOT, timeout=60)


@pytest.fixture()
def client(redis_port):
    db = redis.Redis(port=redis_port, decode_responses=True)
    db.flushall()
    return db


@pytest.fixture()
def world(tmp_path):
    """A warehouse as the daily run leaves it: two known persons (one who refused consent), one erased."""
    warehouse, segments = tmp_path / "w.duckdb", tmp_path / "segments"
    segments.mkdir()
    (segments / "live.yml").write_text(SEGMENTS)
    as_of = dt.datetime.now(dt.UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(
        days=1
    )
    with connect(warehouse) as con:
        con.execute(
            "CREATE TABLE marts.segment_attributes (person_id VARCHAR, as_of TIMESTAMP, evaluated_at TIMESTAMP, "
            "last_seen_at TIMESTAMP, last_add_to_cart_at TIMESTAMP, last_order_at TIMESTAMP, recency_days BIGINT, "
            "days_since_last_order BIGINT, personalization_opt_in BOOLEAN)"
        )
        con.executemany(
            "INSERT INTO marts.segment_attributes VALUES (?, ?, ?, ?, NULL, NULL, 40, NULL, ?)",
            [
                ("p_ann", as_of, as_of + dt.timedelta(days=1), as_of - dt.timedelta(days=40), True),
                ("p_bob", as_of, as_of + dt.timedelta(days=1), as_of - dt.timedelta(days=40), False),
            ],
        )
        con.execute("CREATE TABLE marts.identity_map (identifier_type VARCHAR, identifier VARCHAR, person_id VARCHAR)")
        con.executemany(
            "INSERT INTO marts.identity_map VALUES (?, ?, ?)",
            [("user_id", "ann", "p_ann"), ("anonymous_id", "anon-ann", "p_ann"), ("user_id", "bob", "p_bob")],
        )
        con.execute("CREATE SCHEMA IF NOT EXISTS privacy")
        con.execute("CREATE TABLE privacy.suppression_list (identifier_type VARCHAR, identifier_sha256 VARCHAR)")
        con.execute("INSERT INTO privacy.suppression_list VALUES ('user_id', ?)", [sha256("erased-eve")])
    return warehouse, load_catalog(segments, SCHEMA), segments


def _processor(client, world, **kwargs) -> Processor:
    warehouse, catalog, _ = world
    return Processor(client, Reference.load(warehouse), catalog, TAXONOMY, **kwargs)


def _drain(processor: Processor) -> None:
    while processor.step(block_ms=10):
        pass


def _track(event: str, user: str | None = None, anonymous: str | None = None, at=None, **properties) -> dict:
    at = at or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    return {
        "type": "track",
        "event": event,
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "anonymousId": anonymous,
        "timestamp": at.isoformat(),
        "properties": properties,
    }


@pytest.fixture()
def collector_url(client, redis_port):
    port = _free_port()
    env = {**os.environ, "TESSERA_REDIS_PORT": str(redis_port), "TESSERA_COLLECTOR_WRITE_KEY": WRITE_KEY}
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "collector", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            break
        except OSError:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the collector did not start"
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=30)


def _post(url: str, path: str, body: dict, key: str = WRITE_KEY) -> tuple[int, dict]:
    import base64

    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_segments_own_sdk_delivers_a_batch_that_shows_up_in_membership(client, world, collector_url):
    """segment-analytics-python, pointed at the collector: an anonymous visitor browses and fills a cart,
    then logs in as ann; the stream joins the two at once and ann's segments change."""
    from segment.analytics.client import Client

    sdk = Client(WRITE_KEY, host=collector_url, sync_mode=True, max_retries=1)
    for _ in range(3):
        sdk.track(anonymous_id="anon-new", event="Product Viewed", properties={"product_id": "SKU-1"})
    sdk.track(
        anonymous_id="anon-new", event="Product Added", properties={"product_id": "SKU-1", "price": 150, "quantity": 2}
    )
    sdk.identify(user_id="ann", anonymous_id="anon-new", traits={"plan": "pro"})
    sdk.flush()
    assert client.xlen(broker.EVENTS) == 5

    processor = _processor(client, world)
    _drain(processor)
    assert processor.stats.processed == 5 and processor.stats.quarantined == 0
    live = LiveMembership(client)
    assert live.realtime() == {"browsing_now": "rule", "high_value_cart": "rule", "cart_abandoners": "rule"}
    assert live.person("anonymous_id", "anon-new") == "p_ann"
    assert set(live.segments("p_ann")) == {"browsing_now", "high_value_cart"}
    changes = [f for _, f in client.xrange(broker.CHANGES)]
    assert {(c["person_id"], c["segment"], c["change"]) for c in changes} == {
        ("p_ann", "browsing_now", "entered"),
        ("p_ann", "high_value_cart", "entered"),
    }
    state = json.loads(client.get("tessera:rt:state:p_ann"))
    assert state["last_product_viewed"] == "SKU-1" and float(state["cart_value"]) == 300.0

    # The lookup API serves it: the anonymous id the stream linked resolves, with the live segments.
    from tests.api.test_api import TOKEN, _start, _wait_for, get

    api, base = _start(world[0], TESSERA_REDIS_PORT=str(client.connection_pool.connection_kwargs["port"]))
    try:
        _wait_for(api, base)
        status, body, _ = get(f"{base}/v1/identities/anonymous_id/anon-new/segments", TOKEN)
    finally:
        api.terminate()
        api.wait(timeout=10)
    assert status == 200 and body["person_id"] == "p_ann"
    assert [(s["segment"], s["type"]) for s in body["segments"]] == [
        ("browsing_now", "rule"),
        ("high_value_cart", "rule"),
    ]


def test_consent_and_erasure_apply_to_the_stream_as_to_the_daily_run(client, world):
    from orchestration.realtime.collector import Collector

    collector = Collector(client, WRITE_KEY)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    collector.accept(
        [_track("Product Viewed", user="bob", product_id="X") for _ in range(4)]
        + [_track("Product Viewed", user="erased-eve", product_id="X") for _ in range(4)],
        now,
    )
    assert client.xlen(broker.EVENTS) == 8  # Redis did not know of the erasure yet
    processor = _processor(client, world)  # it brings the daily run's suppression list: eve's messages go
    assert client.xlen(broker.EVENTS) == 4
    _drain(processor)
    assert processor.stats.processed == 4
    collector.accept([_track("Product Viewed", user="erased-eve", product_id="X")], now)
    assert client.xlen(broker.EVENTS) == 4 and client.hget(broker.STATS, "collector_erased") == "1"
    assert not client.keys("tessera:rt:*" + sha256("erased-eve")[:8] + "*")
    assert client.hget("tessera:rt:ids", "user_id:erased-eve") is None
    live = LiveMembership(client)
    assert live.segments("p_bob") == {}  # bob refused personalisation: evaluated, in nothing


def test_cart_abandonment_enters_when_the_hours_pass_without_an_event(client, world):
    from orchestration.realtime.collector import Collector

    hour = time.time() // 3600 * 3600
    clock = [hour + 60]
    added = dt.datetime.fromtimestamp(hour - 23 * 3600 + 1800, dt.UTC)  # 23 hour boundaries ago
    Collector(client, WRITE_KEY).accept(
        [_track("Product Added", user="ann", at=added, product_id="S", price=20)],
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    processor = _processor(client, world, clock=lambda: clock[0])
    _drain(processor)
    live = LiveMembership(client)
    assert live.segments("p_ann") == {}
    assert processor.step(block_ms=10) == 0 and live.segments("p_ann") == {}  # no timer due yet
    clock[0] = hour + 3600 + 1  # the 24th boundary has passed, and no event since
    processor.step(block_ms=10)
    assert set(live.segments("p_ann")) == {"cart_abandoners"}


def test_the_collector_quarantines_with_the_loaders_reason_codes_and_the_batch_replays_them(
    client, world, collector_url, tmp_path
):
    ok = _track("Product Viewed", anonymous="a-1", product_id="X")
    bad = [
        {"type": "track", "messageId": "m-no-ids", "event": "E", "timestamp": ok["timestamp"]},
        {**ok, "messageId": "m-bad-time", "timestamp": "31/10/2026"},
        {**ok, "messageId": "m-no-event", "event": ""},
        "not an object",
    ]
    status, body = _post(collector_url, "/v1/batch", {"batch": [ok, *bad]})
    assert status == 200 and body["accepted"] == 1
    codes = [q["reason_code"] for q in body["quarantined"]]
    assert codes == ["missing_ids", "invalid_timestamp", "missing_event_name", "not_an_object"]
    assert _post(collector_url, "/v1/track", ok, key="wrong-key-0123456789")[0] == 401

    landing = tmp_path / "landing"
    assert LandingWriter(client, landing).step() == 5
    with connect(tmp_path / "batch.duckdb") as con:
        report = load_events(con, landing)
        stored = con.execute("SELECT message_id FROM raw.events").fetchall()
        quarantined = sorted(r[0] for r in con.execute("SELECT reason_code FROM raw.quarantine").fetchall())
    assert stored == [(ok["messageId"],)] and report.rows_loaded == 1
    assert quarantined == sorted(codes)


def _live_state(client) -> dict:
    keys = sorted(client.keys("tessera:rt:state:*"))
    state = {k: json.loads(client.get(k)) for k in keys}
    members = {
        k: sorted(set(json.loads(client.get(k))) - {"_evaluated"}) for k in sorted(client.keys("tessera:rt:members:*"))
    }
    return {"state": state, "members": members, "ids": client.hgetall("tessera:rt:ids")}


@pytest.mark.slow
def test_a_processor_killed_with_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    client, world, redis_port, tmp_path
):
    """3,000 messages from 300 visitors, 10% sent twice; `tessera stream` is killed with SIGKILL while it
    works and restarted; its state equals a replay of the same stream by a processor never killed."""
    from orchestration.realtime.collector import Collector

    warehouse, _, segments = world
    collector = Collector(client, WRITE_KEY)
    now = dt.datetime.now(dt.UTC)
    messages = []
    for i in range(3000):
        visitor = i % 300
        event = ("Product Viewed", "Product Added", "Order Completed")[i % 7 % 3]
        m = _track(
            event,
            anonymous=f"anon-{visitor}",
            at=now - dt.timedelta(seconds=3000 - i),
            product_id=f"S{i % 13}",
            price=30,
        )
        if i % 50 == 0:
            m = {**m, "type": "identify", "userId": f"user-{visitor // 2}"}  # two devices of one user
        messages.append(m)
    messages += messages[::10]  # sent again
    for start in range(0, len(messages), 100):
        collector.accept(messages[start : start + 100], now.replace(tzinfo=None))

    env = {
        **os.environ,
        "TESSERA_REDIS_PORT": str(redis_port),
        "TESSERA_WAREHOUSE": str(warehouse),
        "TESSERA_SEGMENTS_DIR": str(segments),
        "TESSERA_LANDING_DIR": str(tmp_path / "landing"),
    }

    def processed() -> int:
        group = next(g for g in client.xinfo_groups(broker.EVENTS) if g["name"] == broker.PROCESSOR)
        return (group["entries-read"] or 0) - group["pending"]

    stream = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "stream"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while processed() < 600:
        assert stream.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    stream.send_signal(signal.SIGKILL)
    stream.wait()
    assert processed() < len(messages), "the processor finished before it could be killed"

    stream = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "stream"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while processed() < len(messages) or client.xpending(broker.EVENTS, broker.PROCESSOR)["pending"]:
        assert stream.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    stream.terminate()
    stream.wait(timeout=30)
    survived = _live_state(client)

    # The replay: the same stream entries, in a fresh database, through a processor never killed.
    entries = client.xrange(broker.EVENTS)
    replay = redis.Redis(port=redis_port, db=1, decode_responses=True)
    replay.flushdb()
    for _, fields in entries:
        replay.xadd(broker.EVENTS, fields)
    _drain(_processor(replay, world))
    assert survived == _live_state(replay)
    total = sum(int(s["events_total"]) for k, s in survived["state"].items() if k.startswith("tessera:rt:state:"))
    assert total == 3000  # every message once, the copies none


def test_webhooks_are_signed_retried_with_back_off_and_dead_lettered(client):
    """A receiver that fails twice then accepts gets each change once it recovers, signed; one that
    always fails gets max_attempts tries, spaced 1, 2, 4... s apart, and the change is dead-lettered."""
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from orchestration.realtime.webhooks import DEAD_LETTER, WebhookSender, signature

    secret = "webhook-secret-0123456789"
    received: list[dict] = []
    calls = {"/flaky": 0, "/down": 0}

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls[self.path] += 1
            expected = signature(secret, self.headers["X-Tessera-Timestamp"], body)
            assert hmac.compare_digest(expected, self.headers["X-Tessera-Signature"])
            ok = self.path == "/flaky" and calls["/flaky"] > 2
            if ok:
                received.append(json.loads(body))
            self.send_response(200 if ok else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    change = client.xadd(
        broker.CHANGES, {"person_id": "p_ann", "segment": "browsing_now", "change": "entered", "at": "t"}
    )

    clock = [0.0]
    sender = WebhookSender(client, [f"{base}/flaky", f"{base}/down"], secret, max_attempts=4, clock=lambda: clock[0])
    attempts_at = []
    for tick in range(40):  # 20 s of a fake clock, half a second a step
        clock[0] = tick / 2
        if sender.step(block_ms=1):
            attempts_at.append(clock[0])
    server.shutdown()
    assert received == [{"id": change, "person_id": "p_ann", "segment": "browsing_now", "change": "entered", "at": "t"}]
    assert calls == {"/flaky": 3, "/down": 4}
    assert attempts_at == [0.0, 1.0, 3.0, 7.0]  # back-off 1, 2, 4 s
    dead = [f for _, f in client.xrange(DEAD_LETTER)]
    assert [(d["url"], d["attempts"], d["error"]) for d in dead] == [(f"{base}/down", "4", "HTTP 500")]
    assert client.xpending(broker.CHANGES, "webhooks")["pending"] == 0  # settled: delivered or dead-lettered


def test_the_processor_takes_the_next_daily_run_without_a_restart(client, world):
    """A daily run links a new user and erases bob: within a check, the running processor follows."""
    from orchestration.realtime.collector import Collector

    warehouse = world[0]
    processor = _processor(client, world, warehouse=warehouse)
    processor._reload.every_s = 0
    time.sleep(0.01)  # a later modification time than the one the processor read
    with connect(warehouse) as con:
        con.execute("INSERT INTO marts.identity_map VALUES ('user_id', 'carol', 'p_ann')")
        con.execute("INSERT INTO privacy.suppression_list VALUES ('user_id', ?)", [sha256("bob")])
    deadline = time.monotonic() + 30
    while ("user_id", "carol") not in processor.reference.identities:
        assert time.monotonic() < deadline
        processor.step(block_ms=10)
    Collector(client, WRITE_KEY).accept(
        [_track("Product Viewed", user="carol"), _track("Product Viewed", user="bob")],
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    _drain(processor)
    assert client.hget(broker.STATS, "collector_erased") == "1"  # bob's: not stored
    assert processor.stats.processed == 1
    assert json.loads(client.get("tessera:rt:state:p_ann"))["events_total"] == 1


def test_the_days_closing_agrees_with_a_daily_run_of_that_day(client, world):
    """The processor runs through midnight: its closing evaluates everyone at the moment the daily run
    of that day evaluates at. Evaluated by the daily run's SQL on attributes that hold the day's
    events, cart_abandoners has the same members, a person the stream knows by a live id included."""
    from orchestration.realtime.collector import Collector
    from orchestration.realtime.reconcile import reconcile

    warehouse, catalog, _ = world
    day = dt.date.today() - dt.timedelta(days=1)
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    clock = [midnight.replace(tzinfo=dt.UTC).timestamp() - 60]  # 23:59 on `day`
    processor = _processor(client, world, clock=lambda: clock[0])
    processor.step(block_ms=1)  # opens `day`
    added = midnight - dt.timedelta(hours=30)
    Collector(client, WRITE_KEY).accept(
        [
            _track("Product Added", user="ann", at=added.replace(tzinfo=dt.UTC), product_id="S", price=20),
            _track("Product Added", anonymous="stranger", at=added.replace(tzinfo=dt.UTC), product_id="S", price=20),
            _track("Product Added", user="bob", at=added.replace(tzinfo=dt.UTC), product_id="S", price=20),
        ],
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    _drain(processor)
    clock[0] += 120  # past midnight: the next step closes the day
    processor.step(block_ms=1)
    assert client.hget(f"tessera:rt:closing:{day}", "cart_abandoners") == "2"  # ann and the stranger; bob refused

    # The daily run of `day`: the stranger got a person and the day's events are in the attributes.
    with connect(warehouse) as con:
        con.execute("INSERT INTO marts.identity_map VALUES ('anonymous_id', 'stranger', 'p_stranger')")
        con.execute(
            "INSERT INTO marts.segment_attributes VALUES ('p_stranger', ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)",
            [midnight - dt.timedelta(days=1), midnight],
        )
        con.execute(
            "UPDATE marts.segment_attributes SET last_add_to_cart_at = ?, as_of = ?, evaluated_at = ?",
            [added, midnight - dt.timedelta(days=1), midnight],
        )
        rule = catalog.segments["cart_abandoners"].compiled.sql
        con.execute(
            "CREATE TABLE marts.segment_membership AS SELECT person_id, 'cart_abandoners' AS segment_name "
            f"FROM marts.segment_attributes WHERE coalesce(personalization_opt_in, true) AND ({rule.text})",
            list(rule.params),
        )
        [agreement] = reconcile(con, client, day, ["cart_abandoners"])
    assert (agreement.daily, agreement.stream, agreement.both, agreement.disagreement) == (2, 2, 2, 0)


def test_the_stream_drops_only_what_every_group_has_taken_and_acknowledged(client, world, tmp_path):
    """Trimming keeps a message a group has not read, or read and not acknowledged (a consumer killed
    in between), and anything younger than the retention."""
    from orchestration.realtime.collector import Collector

    collector = Collector(client, WRITE_KEY)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    collector.accept([_track("Product Viewed", user="ann") for _ in range(5)], now)
    _drain(_processor(client, world))
    now_ms = int(time.time() * 1000) + 1000
    assert broker.trim(client, broker.EVENTS, 0, now_ms) == 0  # the landing group has read nothing yet
    assert LandingWriter(client, tmp_path / "landing").step() == 5
    collector.accept([_track("Product Viewed", user="ann") for _ in range(3)], now)
    client.xreadgroup(broker.LANDING, "killed", {broker.EVENTS: ">"}, count=1)  # read, never acknowledged
    assert broker.trim(client, broker.EVENTS, 3600, now_ms) == 0  # younger than the retention
    assert broker.trim(client, broker.EVENTS, 0, now_ms) == 4  # four of the five: the last delivered stays
    assert client.xlen(broker.EVENTS) == 4


def test_an_erasure_reaches_everything_the_stream_holds_of_the_person(client, world):
    """dan-42 (a user the daily run has not seen yet) browses, fills a cart, links a device id and sends a
    broken message; the processor keeps his state, links and membership and closes the day with him.
    Then the daily run erases him: every key, entry, field and member of his goes, his linked device id
    too; bob's stay; what he sends afterwards is never stored; and an erasure that comes in while a
    batch is being applied makes the batch start again without him."""
    from orchestration.realtime import erasure
    from orchestration.realtime.collector import Collector

    collector = Collector(client, WRITE_KEY)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    broken = _track("Product Viewed", user="dan-42")
    del broken["timestamp"]
    dan = [_track("Product Viewed", user="dan-42", product_id="X") for _ in range(3)]
    dan += [_track("Product Added", anonymous="anon-dan-7", product_id="X", price=300)]
    dan += [{**_track("Product Viewed", user="dan-42", anonymous="anon-dan-7"), "type": "identify"}, broken]
    collector.accept([*dan, *[_track("Product Viewed", user="bob") for _ in range(3)]], now)
    processor = _processor(client, world)
    _drain(processor)
    processor.close_day(dt.date.today())
    dan_person = client.hget(broker.IDS, "user_id:dan-42")
    assert dan_person and dan_person.startswith("live_")
    assert set(LiveMembership(client).segments(dan_person)) == {"browsing_now", "high_value_cart"}
    assert client.hget(f"tessera:rt:closing:{dt.date.today()}", "high_value_cart") == "1"

    listed = [sha256("erased-eve"), sha256("dan-42")]
    found = erasure.traces(client, listed)
    assert {"tessera:events", "tessera:rt:ids", f"tessera:rt:links:{dan_person}"} <= set(found)
    assert found["tessera:events"] == 5  # the quarantined line included

    removed = erasure.erase(client, listed)
    assert removed["tessera:events"] == 6  # the anonymous add-to-cart too: anon-dan-7 was linked to him
    assert erasure.traces(client, listed) == {}
    assert not [k for k in client.keys("tessera:*") if dan_person in k]
    assert not [e for _, e in client.xrange(broker.CHANGES) if e["person_id"] == dan_person]
    assert client.hget(f"tessera:rt:closing:{dt.date.today()}", "high_value_cart") == "0"
    assert not client.smembers(f"tessera:rt:closing:{dt.date.today()}:high_value_cart")
    assert client.xlen(broker.EVENTS) == 3 and json.loads(client.get("tessera:rt:state:p_bob"))["events_total"] == 3
    landing = client.xpending(broker.EVENTS, broker.LANDING)
    assert landing["pending"] == 0  # nothing of his waits in a group's pending list either
    assert erasure.erase(client, listed) == {}  # applied: the next run reads nothing

    # After: his linked device id is refused at the door, and a batch that an erasure overtakes is redone.
    collector.accept([_track("Product Viewed", anonymous="anon-dan-7")], now)
    assert client.xlen(broker.EVENTS) == 3
    collector.accept([_track("Product Viewed", user="fay-9") for _ in range(3)], now)
    evaluate, calls = processor._evaluate, []

    def erasure_meanwhile(state, now, **kwargs):
        if not calls:
            erasure.erase(client, [*listed, sha256("fay-9")])
        calls.append(set(state))
        return evaluate(state, now, **kwargs)

    processor._evaluate = erasure_meanwhile
    _drain(processor)
    assert len(calls) == 2 and calls[1] == set()  # the batch ran again, and fay was no longer in it
    assert client.hget(broker.IDS, "user_id:fay-9") is None
    assert erasure.traces(client, [*listed, sha256("fay-9")]) == {}


@pytest.mark.parametrize("erase_in_redis", [True, False])
def test_the_erasure_asset_reaches_redis_and_the_no_trace_check_searches_it(
    client, redis_port, tmp_path, monkeypatch, erase_in_redis
):
    """The daily run's erasure asset erases from the running stream's Redis too; with that step
    switched off, the no-trace check fails and names the Redis key that still holds the person."""
    from orchestration.realtime.collector import Collector
    from tests.defs.privacy.test_no_trace_check import USER, _erase

    Collector(client, WRITE_KEY).accept(
        [_track("Product Viewed", user=USER), _track("Product Viewed", user="u-bob-1")],
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    monkeypatch.setenv("TESSERA_REDIS_PORT", str(redis_port))
    if not erase_in_redis:
        monkeypatch.setattr("orchestration.defs.privacy.assets.realtime_erasure.erase", lambda client, listed: {})
    evaluation = _erase(tmp_path, monkeypatch)
    remaining = [fields["user_id"] for _, fields in client.xrange(broker.EVENTS)]
    if erase_in_redis:
        assert evaluation.passed, evaluation.description
        assert remaining == ["u-bob-1"]
    else:
        assert not evaluation.passed and "redis: tessera:events (1)" in evaluation.description, evaluation.description
        assert remaining == [USER, "u-bob-1"]
