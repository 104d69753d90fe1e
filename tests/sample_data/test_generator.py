"""The generator's promises: deterministic, messy in every planted way, and truthful."""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

from orchestration.lib import reason_codes as F
from orchestration.sample_data.generator import generate
from tests.conftest import SMALL


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _events(landing: Path):
    for path in sorted((landing / "events").glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    try:
                        yield path.name, json.loads(line)
                    except json.JSONDecodeError:
                        continue
        except OSError:  # the planted not-gzip file
            continue


def _csv_rows(landing: Path, folder: str):
    for path in sorted((landing / folder).glob("*.csv")):
        try:
            with path.open(encoding="utf-8", newline="") as fh:
                yield from csv.DictReader(fh)
        except UnicodeDecodeError:
            continue


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    cfg = dataclasses.replace(SMALL, persons=60, chunk_size=30)
    generate(tmp_path / "a" / "landing", cfg)
    generate(tmp_path / "b" / "landing", cfg)
    generate(tmp_path / "c" / "landing", dataclasses.replace(cfg, seed=cfg.seed + 1))
    a, b, c = (_tree_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c


def test_every_fault_kind_is_planted(sample):
    planted = {(f["source"], f["reason_code"]) for f in sample.truth_rows("faults")}
    expected_events = {
        F.INVALID_JSON,
        F.NOT_AN_OBJECT,
        F.MISSING_MESSAGE_ID,
        F.MISSING_IDS,
        F.UNKNOWN_TYPE,
        F.INVALID_TIMESTAMP,
        F.FUTURE_TIMESTAMP,
        F.MISSING_TIMESTAMP,
        F.FILE_NOT_GZIP,
    }
    expected_crm = {
        F.INVALID_EMAIL,
        F.INVALID_DATE,
        F.MISSING_REQUIRED,
        F.INVALID_BOOLEAN,
        F.INVALID_PHONE,
        F.WRONG_FIELD_COUNT,
        F.FILE_NOT_UTF8,
    }
    expected_orders = {
        F.INVALID_NUMBER,
        F.INVALID_VALUE,
        F.MISSING_REQUIRED,
        F.INVALID_DATE,
        F.MISSING_CUSTOMER,
        F.WRONG_FIELD_COUNT,
        F.FILE_MISSING_HEADER,
    }
    assert {("events", k) for k in expected_events} <= planted
    assert {("crm", k) for k in expected_crm} <= planted
    assert {("orders", k) for k in expected_orders} <= planted
    assert ("enrichment", F.INVALID_NUMBER) in planted
    assert {("privacy", F.INVALID_VALUE), ("privacy", F.MISSING_REQUIRED)} <= planted


def test_truth_assigns_each_identifier_to_one_person(sample):
    owners = collections.defaultdict(set)
    for row in sample.truth_rows("identifiers"):
        owners[(row["identifier_type"], row["identifier"])].add(row["person_key"])
    assert owners
    assert all(len(p) == 1 for p in owners.values())
    types = {t for t, _ in owners}
    assert types == {"anonymous_id", "user_id", "customer_id", "email", "phone"}


def test_archetypes_have_distinct_habits(sample):
    persons = sample.truth_rows("persons")
    by_type = collections.defaultdict(list)
    for p in persons:
        by_type[p["archetype"]].append(p)
    assert set(by_type) == {"buyer", "browser", "content_reader", "lapsed", "newcomer"}
    assert all(int(p["frequency_orders"]) == 0 for p in by_type["browser"])
    buyers_next = sum(p["purchased_next_30d"] == "True" for p in by_type["buyer"]) / len(by_type["buyer"])
    lapsed_next = sum(p["purchased_next_30d"] == "True" for p in by_type["lapsed"]) / len(by_type["lapsed"])
    assert buyers_next > 0.6 and lapsed_next == 0
    mobile_readers = sum(p["primary_device_type"] == "mobile" for p in by_type["content_reader"])
    assert mobile_readers / len(by_type["content_reader"]) > 0.8


def test_messy_patterns_are_present(sample):
    events = list(_events(sample.landing))
    by_message = collections.Counter(e["messageId"] for _, e in events if isinstance(e, dict) and "messageId" in e)
    assert sum(n - 1 for n in by_message.values() if n > 1) == sample.summary["counts"]["duplicate_messages"]

    # Several devices per person, logged in on some of them.
    truth = sample.truth_rows("identifiers")
    anon_per_person = collections.Counter(r["person_key"] for r in truth if r["identifier_type"] == "anonymous_id")
    assert max(anon_per_person.values()) >= 2

    # The shared household tablet carries two different userIds.
    shared = {r["identifier"] for r in truth if r["shared_device"] == "True"}
    assert shared
    users_on = collections.defaultdict(set)
    for _, e in events:
        if isinstance(e, dict) and e.get("anonymousId") in shared and e.get("userId"):
            users_on[e["anonymousId"]].add(e["userId"])
    assert any(len(u) == 2 for u in users_on.values())

    orders = [r for r in _csv_rows(sample.landing, "orders") if r.get("order_id")]
    assert any(not r["customer_id"] and r["email"] for r in orders), "guest orders with only an email"
    completed_events = {
        e["properties"].get("order_id")
        for _, e in events
        if isinstance(e, dict) and e.get("event") == "Order Completed"
    }
    order_ids = {r["order_id"] for r in orders}
    assert completed_events & order_ids, "orders seen both as an event and in orders/"
    refunded = {r["order_id"] for r in orders if r["status"] == "refunded"}
    assert refunded & completed_events, "a refunded order whose Order Completed event still exists"

    bots = {r["anonymous_id"] for r in sample.truth_rows("bots")}
    per_bot = collections.Counter(e.get("anonymousId") for _, e in events if isinstance(e, dict))
    assert bots and all(per_bot[b] >= 100 for b in bots)

    counts = sample.summary["counts"]
    for key in (
        "crm_duplicate_email_case",
        "crm_duplicate_name_typo",
        "erasure_requests",
        "consent_changed_in_delta",
        "junk_user_id_sessions",
        "namesake_pairs",
    ):
        assert counts.get(key, 0) > 0, key


def test_nothing_valid_happens_after_as_of(sample):
    planted = {f["raw"] for f in sample.truth_rows("faults")}
    limit = dt.datetime.combine(SMALL.as_of + dt.timedelta(days=1), dt.time(), dt.UTC)
    checked = 0
    for _, e in _events(sample.landing):
        if not isinstance(e, dict) or json.dumps(e, ensure_ascii=False, separators=(",", ":")) in planted:
            continue
        assert dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) < limit
        checked += 1
    assert checked > 1000


def test_rfm_truth_matches_the_landing_orders(sample):
    """Truth counts each completed order once: orders/ status wins, event-only orders count."""
    planted = {f["raw"] for f in sample.truth_rows("faults")}
    status = {}
    amount = collections.defaultdict(float)
    for path in sorted((sample.landing / "orders").glob("*.csv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines[0].startswith("order_id"):
            continue  # the planted header-less copy
        for raw, row in zip(lines[1:], csv.DictReader(lines), strict=True):
            if raw in planted:
                continue
            status[row["order_id"]] = row["status"]
            amount[row["order_id"]] += float(row["amount"])
    event_orders = {}
    for _, e in _events(sample.landing):
        if isinstance(e, dict) and e.get("event") == "Order Completed":
            event_orders[e["properties"]["order_id"]] = e["properties"]["revenue"]
    completed = {o for o, s in status.items() if s == "completed"} | (set(event_orders) - set(status))
    money = sum(amount[o] if o in amount else event_orders[o] for o in completed)
    persons = sample.truth_rows("persons")
    assert sum(int(p["frequency_orders"]) for p in persons) == len(completed)
    assert abs(sum(float(p["monetary_total"]) for p in persons) - money) < 0.01 * len(completed) + 0.01


def test_people_never_share_a_phone_number():
    from orchestration.sample_data.generator import _e164, _phone

    numbers = [_e164(_phone("GB", owner)) for owner in range(20_000)]
    assert len(set(numbers)) == len(numbers)


def test_people_never_share_an_email_at_scale(tmp_path):
    """Identifiers collide by chance only at scale, so check the email rule on many people at once."""
    import random

    from orchestration.sample_data.generator import _make_person

    cfg = dataclasses.replace(SMALL, persons=30_000)
    emails = [_make_person(cfg, i, random.Random(f"7:{i}")).email for i in range(30_000)]
    assert len(set(emails)) == len(emails)
