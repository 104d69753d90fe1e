"""A messy landing zone, written independently of the clean generator: what real exports hold.

`tessera generate --messy` writes it. Each person has a device, a login and (mostly) a CRM
record; the dirt is planted on purpose and written to the truth folder, so tests know the answer:

- CRM exports with a BOM, CRLF line ends, quoted newlines; phones that are valid, possible but
  unassigned (US area codes 286 and 471, an unassigned UK range), `555-0100` and `N/A`; birth
  dates in three formats; emails upper-cased, with display names, and look-alikes (a Cyrillic
  `і`); consent as `true`/`false`, `yes`/`no`, blank and `N/A`; an opt-out followed by a blank;
  records rejected whole (no `updated_at`, no `customer_id`) that still carry an opt-out;
- events with a conflicting duplicate `messageId`, a far-future `timestamp` and `receivedAt`,
  a line of several megabytes and CRLF line ends;
- orders with zero, negative and refunded amounts, lower-case and unknown currencies.

truth/persons.csv: per person its identifiers, whether they are opted out (after every rule of
docs/input_contract.md), whether they have consent evidence, and their monetary total.
truth/planted.json: records planted, expected quarantined and field issues by reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from orchestration.lib import reason_codes as F

CRM_HEADER = [
    "customer_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birth_date",
    "street",
    "city",
    "postcode",
    "country",
    "signup_at",
    "updated_at",
    "marketing_opt_in",
    "personalization_opt_in",
]
ORDER_HEADER = ["order_id", "customer_id", "email", "ordered_at", "amount", "currency", "status", "channel"]
FIRST = ["Ann", "Bo", "Chloé", "Dmitri", "Eva", "Femi", "Günter", "Hana", "Ivan", "Jo", "Kai", "Lena", "Mo", "Nia"]
LAST = ["Smith", "Öztürk", "Nguyen", "García", "Kowalski", "O'Brien", "Müller", "Rossi", "Dubois", "Tanaka"]
# (country, a valid number, a possible but unassigned one), each a format real exports use.
PHONES = [
    ("US", "(201) 555-{n:04d}", "(286) 746-{n:04d}"),
    ("US", "+1 212-555-{n:04d}", "+1 471-305-{n:04d}"),
    ("US", "2015550{n:03d}", "6358848{n:03d}"),
    ("GB", "020 7946 {n:04d}", "01000 000{n:03d}"),
]
# Consent scenarios: (texts of the personalization values of successive records, opted out?, evidence?)
CONSENT = {
    "in": (["true"], False, True),
    "out": (["false"], True, True),
    "yes": (["yes"], False, True),
    "no": (["No"], True, True),
    "out_then_blank": (["false", ""], True, True),
    "out_then_na": (["0", "N/A"], True, True),
    "out_then_in": (["false", "true"], False, True),
    "blank": ([""], False, False),
    "na": (["N/A"], False, False),
    "out_rejected_no_date": (["true"], True, True),  # plus a rejected record: same customer_id, no date, "false"
    "out_rejected_no_id": (["true"], True, True),  # plus a rejected record: no customer_id, their email, "false"
    "no_crm": ([], False, False),
}


@dataclass(frozen=True)
class MessyConfig:
    persons: int = 300
    seed: int = 29
    as_of: dt.date = dt.date(2026, 10, 31)


class _Planted:
    def __init__(self) -> None:
        self.records: Counter = Counter()  # source -> lines written (records, not header)
        self.quarantined: Counter = Counter()  # (source, reason_code)
        self.field_issues: Counter = Counter()  # (source, column, reason_code)


def _csv_text(header: list[str], rows: list[list[str]], crlf: bool, bom: bool) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n" if crlf else "\n").writerows([header, *rows])
    return ("\ufeff" if bom else "") + buf.getvalue()


def generate_messy(out: Path, cfg: MessyConfig = MessyConfig(), truth_dir: Path | None = None) -> dict:
    rng = random.Random(cfg.seed)
    planted = _Planted()
    end = dt.datetime.combine(cfg.as_of, dt.time(20, 0), dt.UTC)
    crm_rows: list[list[str]] = []
    order_rows: list[list[str]] = []
    events: list[dict] = []
    truth = []
    scenarios = list(CONSENT)

    def at(days_ago: float) -> dt.datetime:
        return end - dt.timedelta(days=days_ago)

    def iso(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    for i in range(cfg.persons):
        scenario = scenarios[i % len(scenarios)]
        values, opted_out, evidence = CONSENT[scenario]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        cid, uid, anon = f"M{i:06d}", f"u-{i:06d}", f"anon-{cfg.seed}-{i:06d}"
        email = f"{first.lower().replace('é', 'e').replace('ü', 'u')}.{i}@example.com"
        country, valid_phone, unassigned_phone = PHONES[i % len(PHONES)]
        # Field dirt on records that still load (a look-alike email only where it cannot hide an opt-out).
        email_text = rng.choice([email, email.upper(), f"{first} {last} <{email}>", f"  {email} "])
        lookalike = not opted_out and evidence and rng.random() < 0.1
        if lookalike:
            email_text = email.replace("@", "\u0456@", 1)  # Cyrillic і before the @
            planted.field_issues[("crm", "email", F.MIXED_SCRIPT_EMAIL)] += len(values)
        phone_kind = rng.choice(["valid", "unassigned", "fake", "na", "blank"])
        # 555-0100 lacks the US area code; in the UK the same digits are a possible (9-digit) number.
        phone = {
            "valid": valid_phone,
            "unassigned": unassigned_phone,
            "fake": "555-0100" if country == "US" else "n/a",
            "na": "N/A",
            "blank": "",
        }[phone_kind].format(n=i % 1000)
        if phone_kind in ("fake", "na"):
            planted.field_issues[("crm", "phone", F.INVALID_PHONE)] += len(values)
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000))
        birth_text = rng.choice([birth.isoformat(), birth.strftime("%d/%m/%Y"), birth.strftime("%b %d, %Y"), ""])
        if birth_text and "-" not in birth_text:
            planted.field_issues[("crm", "birth_date", F.INVALID_DATE)] += len(values)
        street = rng.choice([f"{i} High Street", f"{i} Main St\nApt {i % 9 + 1}"])  # quoted newline
        for v, value in enumerate(values):
            updated = at(80 - 30 * v)
            crm_rows.append(
                [
                    cid,
                    email_text,
                    phone,
                    first,
                    last,
                    birth_text,
                    street,
                    "Springfield",
                    f"{10000 + i}",
                    country.lower() if i % 5 == 0 else country,
                    iso(at(200)),
                    updated.isoformat(),
                    rng.choice(["true", "1", "yes", ""]),
                    value,
                ]
            )
            if value.upper() == "N/A":
                planted.field_issues[("crm", "personalization_opt_in", F.INVALID_BOOLEAN)] += 1
        planted.records["crm"] += len(values)
        if scenario == "out_rejected_no_date":
            crm_rows.append([cid, email, "", first, last, "", "", "", "", country, "", "", "", "false"])
            planted.records["crm"] += 1
            planted.quarantined[("crm", F.MISSING_REQUIRED)] += 1
        if scenario == "out_rejected_no_id":
            crm_rows.append(["", email, "", first, last, "", "", "", "", country, "", at(10).isoformat(), "", "false"])
            planted.records["crm"] += 1
            planted.quarantined[("crm", F.MISSING_REQUIRED)] += 1

        # Behaviour: a login that ties device, user and email, then activity over 90 days.
        recency = rng.choice([1, 3, 10, 45, 70])
        events.append(
            {
                "messageId": f"m-{i}-id",
                "type": "identify",
                "anonymousId": anon,
                "userId": uid,
                "timestamp": iso(at(recency + 5)),
                "receivedAt": iso(at(recency + 5)),
                "traits": {"email": email},
                "context": {"location": {"country": country}},
            }
        )
        for k in range(rng.randint(3, 25)):
            t = at(recency + rng.uniform(0, 20))
            events.append(
                {
                    "messageId": f"m-{i}-{k}",
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": anon,
                    "userId": uid if k % 2 else None,
                    "timestamp": iso(t),
                    "receivedAt": iso(t),
                    "properties": {"product_id": f"P{k}", "category": "home"},
                    "context": {"location": {"country": country}},
                }
            )

        # Orders: completed (one of them zero), refunded, a negative completed one (quarantined).
        money = 0.0
        if scenario != "no_crm" and i % 2 == 0:
            for k in range(rng.randint(1, 4)):
                amount = 0.0 if k == 3 else round(rng.uniform(5, 400), 2)
                currency = rng.choice(["EUR", "usd", "GBP", "EURO", "US$"])
                if currency in ("EURO", "US$"):
                    planted.field_issues[("orders", "currency", F.INVALID_VALUE)] += 1
                order_rows.append(
                    [
                        f"O{i}-{k}",
                        cid,
                        email if k % 2 else "",
                        iso(at(recency + rng.uniform(0, 80))),
                        f"{amount:.2f}",
                        currency,
                        "completed",
                        "web",
                    ]
                )
                money += amount
            if i % 6 == 0:
                order_rows.append([f"O{i}-r", cid, "", iso(at(recency)), "-25.00", "EUR", "refunded", "web"])
            if i % 10 == 0:
                order_rows.append([f"O{i}-n", cid, "", iso(at(recency)), "-99.00", "EUR", "completed", "web"])
                planted.quarantined[("orders", F.NEGATIVE_AMOUNT)] += 1
            planted.records["orders"] += sum(1 for r in order_rows if r[1] == cid)
        truth.append(
            {
                "index": i,
                "customer_id": cid if values else "",
                "user_id": uid,
                "anonymous_id": anon,
                "email": email,
                "scenario": scenario,
                "opted_out": opted_out,
                "consent_evidence": evidence,
                "lookalike_email": lookalike,
                "monetary_total": f"{money:.2f}",
            }
        )

    # Event dirt: a conflicting duplicate, a far-future message, a giant line.
    conflict = dict(events[1], properties={"revenue": 99999, "product_id": "P0"})
    future = dict(
        events[1], messageId="m-future", timestamp="9999-12-31T00:00:00.000Z", receivedAt="9999-12-31T00:00:00.000Z"
    )
    giant = dict(events[2], messageId="m-giant", properties={"blob": "x" * (3 * 1024**2)})
    events += [conflict, future, giant]
    planted.quarantined[("events", F.CONFLICTING_DUPLICATE)] += 1
    planted.quarantined[("events", F.FUTURE_TIMESTAMP)] += 1

    (out / "crm").mkdir(parents=True, exist_ok=True)
    (out / "orders").mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(parents=True, exist_ok=True)
    half = len(crm_rows) // 2
    (out / "crm" / "export_a.csv").write_text(
        _csv_text(CRM_HEADER, crm_rows[:half], crlf=True, bom=True), encoding="utf-8", newline=""
    )
    (out / "crm" / "export_b.csv").write_text(
        _csv_text(CRM_HEADER, crm_rows[half:], crlf=False, bom=False), encoding="utf-8", newline=""
    )
    (out / "orders" / "orders.csv").write_text(
        _csv_text(ORDER_HEADER, order_rows, crlf=True, bom=False), encoding="utf-8", newline=""
    )
    lines = [json.dumps(e, ensure_ascii=False) for e in events]
    half = len(lines) // 2
    (out / "events" / "web-a.jsonl").write_text("\r\n".join(lines[:half]) + "\r\n", encoding="utf-8", newline="")
    (out / "events" / "web-b.jsonl").write_text("\n".join(lines[half:]) + "\n", encoding="utf-8")
    planted.records["events"] = len(events)

    summary = {
        "persons": cfg.persons,
        "seed": cfg.seed,
        "as_of": cfg.as_of.isoformat(),
        "records": dict(planted.records),
        "quarantined": {f"{s}/{c}": n for (s, c), n in sorted(planted.quarantined.items())},
        "field_issues": {f"{s}/{col}/{c}": n for (s, col, c), n in sorted(planted.field_issues.items())},
    }
    if truth_dir is not None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        with (truth_dir / "persons.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(truth[0]))
            writer.writeheader()
            writer.writerows(truth)
        (truth_dir / "planted.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
