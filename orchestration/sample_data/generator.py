"""Sample data to the landing contract (docs/input_contract.md), with a ground-truth folder.

People are simulated one at a time from their own random stream (seed, person index), so the
output is deterministic for a seed and chunks of people can be generated in parallel. What the
landing files contain is realistic and messy; what `truth/` says about it is exact:

- identifiers.csv   every identifier that appears in the landing data, with its true person;
- persons.csv       archetype, consent, erasure, RFM as of `as_of`, purchases after `as_of`, and the
                    products each person buys again and again (favourite_products);
- bots.csv          the bot anonymousIds (not persons);
- faults.csv        every planted malformed line or file, with its reason code and raw text; `column`
                    names the optional field of a record that loads with that field nulled;
- summary.json      parameters and counts of every planted fault and messy pattern.

Planted malformed lines are extra copies of valid records, so they never change the truth.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import itertools
import json
import math
import os
import random
import shutil
import unicodedata
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers

from orchestration.lib import reason_codes as F
from orchestration.sample_data import vocab as V

UTC = dt.UTC
CRM_COLUMNS = [
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
ORDER_COLUMNS = [
    "order_id",
    "customer_id",
    "email",
    "ordered_at",
    "amount",
    "currency",
    "status",
    "channel",
    "product_id",
    "quantity",
]
# The products orders draw from: per category, CATALOGUE_SIZE products whose popularity falls off as
# a Zipf law; each person has a favourite in each of their categories, which they buy again and
# again (FAVOURITE_SHARE of their lines), and a product is often bought with its pair (the product
# next to it in the catalogue). What recommendations can learn; persons.csv names the favourites.
CATALOGUE_SIZE = 300
FAVOURITE_SHARE = 0.45
PAIR_SHARE = 0.5
ENRICHMENT_COLUMNS = ["email_domain", "company_name", "industry", "employee_count", "annual_revenue_usd"]
PRIVACY_COLUMNS = ["requested_at", "identifier_type", "identifier"]

# Behaviour archetypes: share of persons, how often and how they visit, and how often they buy.
ARCHETYPES: dict[str, dict] = {
    "buyer": dict(
        share=0.20,
        registered=1.0,
        devices=(1, 3),
        mobile=0.35,
        session_days=14.0,
        events=(2, 5),
        gap_s=(20, 90),
        purchase_days=14.0,
        hours=[12, 13, 19, 20, 21],
        content=0.05,
    ),
    "browser": dict(
        share=0.25,
        registered=0.25,
        devices=(1, 2),
        mobile=0.5,
        session_days=16.0,
        events=(2, 6),
        gap_s=(8, 35),
        purchase_days=None,
        hours=list(range(9, 23)),
        content=0.05,
    ),
    "content_reader": dict(
        share=0.20,
        registered=0.4,
        devices=(1, 2),
        mobile=0.92,
        session_days=10.0,
        events=(1, 4),
        gap_s=(60, 240),
        purchase_days=400.0,
        hours=[7, 8, 20, 21, 22],
        content=0.8,
    ),
    "lapsed": dict(
        share=0.20,
        registered=0.9,
        devices=(1, 2),
        mobile=0.4,
        session_days=12.0,
        events=(2, 5),
        gap_s=(20, 90),
        purchase_days=20.0,
        hours=[12, 19, 20, 21],
        content=0.1,
    ),
    "newcomer": dict(
        share=0.15,
        registered=0.6,
        devices=(1, 1),
        mobile=0.5,
        session_days=3.0,
        events=(2, 5),
        gap_s=(15, 80),
        purchase_days=25.0,
        hours=list(range(10, 22)),
        content=0.2,
    ),
}
TAXONOMY = {
    "view": "Product Viewed",
    "add": "Product Added",
    "purchase": "Order Completed",
    "search": "Products Searched",
    "video": "Video Watched",
    "scroll": "Scroll Depth Reached",
}


@dataclass(frozen=True)
class GeneratorConfig:
    persons: int = 2000
    seed: int = 42
    as_of: dt.date = dt.date(2026, 10, 31)
    history_days: int = 180
    horizon_days: int = 30
    chunk_size: int = 5_000
    workers: int = 1
    fault_rate: float = 0.004  # share of event lines that get a malformed twin
    duplicate_rate: float = 0.03  # share of messages also sent by the server collector

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.as_of - dt.timedelta(days=self.history_days - 1), dt.time(), UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive end of the observed period: midnight UTC after as_of."""
        return dt.datetime.combine(self.as_of + dt.timedelta(days=1), dt.time(), UTC)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _scramble(n: int, salt: int) -> int:
    """A bijection on 0..10^8-1: distinct people never share an id, and ids do not leak order."""
    return (n * 48271 + salt * 7919 + 12345) % 100_000_000


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


def _iso(ts: dt.datetime, rng: random.Random, tz: ZoneInfo | None = None) -> str:
    """ISO-8601 in the shapes collectors really send: mostly UTC with millis, some with offsets."""
    r = rng.random()
    if r < 0.85 or tz is None:
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    if r < 0.95:
        return ts.astimezone(tz).isoformat(timespec="milliseconds")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ascii(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 4:
        return name + name[-1]
    i = rng.randrange(1, len(name) - 2)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbours
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    if kind == 1:  # drop a letter
        return name[:i] + name[i + 1 :]
    return name[:i] + name[i] + name[i:]  # double a letter


def _phone(country: str, owner: int) -> phonenumbers.PhoneNumber:
    """A valid mobile number of `country`, distinct for each owner (people do not share mobiles)."""
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    digits = str(example.national_number)
    free = min(7, len(digits) - 3)
    # The last free-1 digits are a bijection of the owner's index (unique below 10^(free-1) owners);
    # the digit before them varies until the number is valid in the country's numbering plan.
    unique = f"{_scramble(owner, 100) % 10 ** (free - 1):0{free - 1}d}"
    for attempt in range(10):
        cand = digits[:-free] + str((attempt + 2) % 10) + unique
        num = phonenumbers.parse("+" + str(example.country_code) + cand)
        if phonenumbers.is_valid_number(num):
            return num
    return example


def _phone_text(num: phonenumbers.PhoneNumber, rng: random.Random) -> str:
    fmt = rng.choice(["e164", "intl", "national", "national", "dots"])
    if fmt == "e164":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    if fmt == "intl":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
    return national.replace(" ", ".") if fmt == "dots" else national


def _e164(num: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _email_variant(email: str, rng: random.Random) -> str:
    """The same address as a person might type it: other case, stray spaces."""
    local, domain = email.split("@")
    r = rng.random()
    if r < 0.4:
        return f"{local.capitalize()}@{domain}"
    if r < 0.7:
        return f" {email.upper()} "
    return f"{local}@{domain.upper()}"


# ---------------------------------------------------------------------------------------------
# The simulation of one chunk of people
# ---------------------------------------------------------------------------------------------


@dataclass
class Device:
    anonymous_id: str
    device_type: str  # desktop, mobile, tablet
    platform: str  # web or app
    user_agent: str
    ip: str
    shared: bool = False


@dataclass
class Person:
    index: int
    key: str
    archetype: str
    country: str
    tz: str
    registered: bool
    email: str
    first_name: str
    last_name: str
    birth_date: dt.date
    city: str
    postcode: str
    street: str
    phone: phonenumbers.PhoneNumber | None
    user_id: str | None
    customer_ids: list[str]
    devices: list[Device]
    active_from: dt.datetime
    active_to: dt.datetime
    purchase_rate: float  # orders per day
    categories: list[str]
    personalization_opt_in: bool = True
    erased: bool = False
    identifiers: dict = field(default_factory=dict)  # (type, value) -> linkable
    orders: list = field(default_factory=list)
    future_orders: int = 0
    favourites: dict = field(default_factory=dict)  # category -> the product they buy again and again


def _catalogue_product(rng: random.Random, category: str) -> str:
    """A product of `category`, the popular ones far more often (Zipf, s = 1.1)."""
    weights = _zipf_weights()
    return f"SKU-{category[:3].upper()}-{1000 + rng.choices(range(CATALOGUE_SIZE), cum_weights=weights)[0]}"


@functools.cache
def _zipf_weights() -> list[float]:
    return list(itertools.accumulate(1 / (i + 1) ** 1.1 for i in range(CATALOGUE_SIZE)))


def _basket_product(rng: random.Random, p: Person, category: str, lines: list[dict]) -> str:
    """The product of an order line: the person's favourite, the pair of a product already in the
    basket, or one of the catalogue."""
    draw = rng.random()
    if draw < FAVOURITE_SHARE:
        return p.favourites[category]
    same = [ln["sku"] for ln in lines if ln["category"] == category]
    if same and draw < FAVOURITE_SHARE + (1 - FAVOURITE_SHARE) * PAIR_SHARE:
        number = int(same[0][-4:]) - 1000
        return f"{same[0][:-4]}{1000 + (number ^ 1)}"  # pairs: 0-1, 2-3, ...
    return _catalogue_product(rng, category)


class ChunkWriter:
    """Collects one chunk's output in memory, then writes its part files."""

    def __init__(self, cfg: GeneratorConfig, part: int):
        self.cfg = cfg
        self.part = part
        self.event_lines: dict[str, list[str]] = defaultdict(list)
        self.crm_rows: dict[str, list[list[str]]] = defaultdict(list)
        self.order_rows: dict[str, list[list[str]]] = defaultdict(list)
        self.privacy_rows: list[list[str]] = []
        self.truth_identifiers: list[list] = []
        self.truth_persons: list[list] = []
        self.truth_bots: list[list] = []
        self.faults: list[list[str]] = []
        self.counts: Counter = Counter()

    def event_file(self, received: dt.datetime, collector: str) -> str:
        ext = "jsonl" if collector == "server" else "jsonl.gz"
        return f"events/{received.date().isoformat()}-{collector}-p{self.part:03d}.{ext}"


def _make_person(cfg: GeneratorConfig, idx: int, rng: random.Random) -> Person:
    names = list(ARCHETYPES)
    archetype = rng.choices(names, weights=[ARCHETYPES[a]["share"] for a in names])[0]
    a = ARCHETYPES[archetype]
    countries = list(V.COUNTRIES)
    country = rng.choices(countries, weights=[V.COUNTRIES[c]["weight"] for c in countries])[0]
    cinfo = V.COUNTRIES[country]
    city, post_prefix = rng.choice(cinfo["cities"])
    first, last = rng.choice(V.FIRST_NAMES), rng.choice(V.LAST_NAMES)
    n = _scramble(idx, 3) % 1_000_000  # unique per person: two people never share a mailbox
    if rng.random() < 0.2:
        domain = rng.choice(V.COMPANIES)[0]
    else:
        domain = rng.choice(V.FREEMAIL_DOMAINS)
    local = _ascii(f"{first}.{last}").lower().replace(" ", "").replace("'", "")
    email = f"{local}{n}@{domain}"
    registered = rng.random() < a["registered"]

    span = cfg.end - cfg.start
    if archetype == "newcomer":
        active_from = cfg.end - dt.timedelta(days=rng.uniform(1, 14))
        active_to = cfg.end + dt.timedelta(days=cfg.horizon_days)
    elif archetype == "lapsed":
        active_from = cfg.start + dt.timedelta(days=rng.uniform(0, 40))
        active_to = cfg.end - dt.timedelta(days=rng.uniform(50, 110))
    else:
        active_from = cfg.start + span * rng.uniform(0, 0.6)
        active_to = cfg.end + dt.timedelta(days=cfg.horizon_days)

    ndev = rng.randint(*a["devices"]) if registered else 1
    devices = []
    for d in range(ndev):
        mobile = rng.random() < a["mobile"] if d == 0 else rng.random() < 0.5
        dtype = "mobile" if mobile else ("tablet" if rng.random() < 0.15 else "desktop")
        platform = "app" if dtype == "mobile" and rng.random() < 0.35 else "web"
        devices.append(
            Device(
                _uuid(rng),
                dtype,
                platform,
                rng.choice(V.USER_AGENTS[dtype]),
                f"198.51.{rng.randrange(100, 200)}.{rng.randrange(1, 254)}",
            )
        )
    rate = None
    if a["purchase_days"]:
        rate = (1.0 / a["purchase_days"]) * math.exp(rng.gauss(0, 0.45))
    return Person(
        index=idx,
        key=f"P{idx:07d}",
        archetype=archetype,
        country=country,
        tz=rng.choice(cinfo["tz"]),
        registered=registered,
        email=email,
        first_name=first,
        last_name=last,
        birth_date=dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 55)),
        city=city,
        postcode=f"{post_prefix} {rng.randrange(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
        if country == "GB"
        else (f"{post_prefix}{rng.randrange(10, 99)}" if country in ("US", "CA") else post_prefix),
        street=f"{rng.randrange(1, 200)} {rng.choice(cinfo['streets'])}",
        phone=_phone(country, idx) if registered and rng.random() < 0.75 else None,
        user_id=f"u{_scramble(idx, 1):08d}" if registered else None,
        customer_ids=[f"C{_scramble(idx * 2, 2):08d}"] if registered else [],
        devices=devices,
        active_from=active_from,
        active_to=active_to,
        purchase_rate=rate or 0.0,
        categories=rng.sample(V.CATEGORIES, 3),
        personalization_opt_in=rng.random() > 0.08,
    )


class Simulator:
    def __init__(self, cfg: GeneratorConfig, part: int, lo: int, hi: int):
        self.cfg = cfg
        self.w = ChunkWriter(cfg, part)
        self.lo, self.hi = lo, hi
        self.used_shared: set[str] = set()

    # -- identifiers ---------------------------------------------------------------------------
    def _seen(self, p: Person, kind: str, value: str, linkable: bool = True) -> None:
        key = (kind, value)
        p.identifiers[key] = p.identifiers.get(key, False) or linkable

    def _record_identifiers(self, p: Person, dev: Device, msg: dict) -> None:
        """Truth follows what was written: an identifier counts once a message carries it."""
        uid = msg.get("userId")
        own_uid = p.user_id is not None and uid == p.user_id
        traits = msg.get("traits") or {}
        if own_uid:
            self._seen(p, "user_id", uid)
        if dev.shared:
            self.used_shared.add(dev.anonymous_id)
        else:
            self._seen(p, "anonymous_id", dev.anonymous_id, linkable=own_uid or "email" in traits)
        if "email" in traits:
            self._seen(p, "email", p.email)
        if "phone" in traits and p.phone is not None:
            self._seen(p, "phone", _e164(p.phone))

    # -- events ----------------------------------------------------------------------------------
    def _message(
        self,
        rng,
        p: Person | None,
        dev: Device,
        ts: dt.datetime,
        mtype: str,
        *,
        user_id: str | None,
        event: str | None = None,
        props: dict | None = None,
        traits: dict | None = None,
        page: dict | None = None,
        tz: str | None = None,
        campaign: dict | None = None,
    ) -> dict:
        zone = ZoneInfo(tz) if tz else None
        received = ts + dt.timedelta(milliseconds=rng.randrange(40, 3000))
        if rng.random() < 0.01 and dev.platform == "app":  # offline app: delivered days later
            received += dt.timedelta(days=rng.randrange(1, 3), hours=rng.randrange(0, 12))
        ctx: dict = {
            "ip": dev.ip,
            "userAgent": dev.user_agent,
            "library": {
                "name": "analytics.js"
                if dev.platform == "web"
                else ("analytics-ios" if "iPhone" in dev.user_agent else "analytics-android"),
                "version": "5.2.1",
            },
        }
        if p is not None:
            ctx["locale"] = V.COUNTRIES[p.country]["locale"]
            ctx["timezone"] = p.tz
            ctx["location"] = {"country": p.country}
        if dev.platform == "app" or rng.random() < 0.3:
            ctx["device"] = {"type": dev.device_type}
        if page:
            ctx["page"] = page
        if campaign:
            ctx["campaign"] = campaign
        msg: dict = {"messageId": _uuid(rng), "type": mtype}
        if mtype == "track":
            msg["event"] = event
        elif mtype in ("page", "screen"):
            msg["name"] = event
        msg["anonymousId"] = dev.anonymous_id
        msg["userId"] = user_id
        msg["timestamp"] = _iso(ts, rng, zone)
        msg["sentAt"] = _iso(ts + dt.timedelta(milliseconds=20), rng)
        msg["receivedAt"] = _iso(received, rng)
        msg["properties"] = props or {}
        if traits is not None:
            msg["traits"] = traits
        msg["context"] = ctx
        msg["_received"] = received
        msg["_owner"] = (p, dev)
        return msg

    def _emit(self, rng, msg: dict, collector: str) -> bool:
        """Write the message (maybe twice, maybe with a planted fault); False if it arrives after as_of."""
        received = msg.pop("_received")
        owner, dev = msg.pop("_owner")
        if received >= self.cfg.end:
            return False  # not yet arrived by as_of
        if owner is not None:
            self._record_identifiers(owner, dev, msg)
        line = json.dumps(msg, ensure_ascii=False, separators=(",", ":"))
        fname = self.w.event_file(received, collector)
        self.w.event_lines[fname].append(line)
        self.w.counts["event_messages"] += 1
        if rng.random() < self.cfg.duplicate_rate:
            dup = dict(msg)
            dup["context"] = {**msg["context"], "library": {"name": "analytics-node", "version": "2.1.0"}}
            dup["receivedAt"] = _iso(received + dt.timedelta(milliseconds=rng.randrange(5, 900)), rng)
            self.w.event_lines[self.w.event_file(received, "server")].append(
                json.dumps(dup, ensure_ascii=False, separators=(",", ":"))
            )
            self.w.counts["duplicate_messages"] += 1
        if rng.random() < self.cfg.fault_rate:
            self._plant_event_fault(rng, msg, fname)
        return True

    def _plant_event_fault(self, rng, msg: dict, fname: str) -> None:
        bad = json.loads(json.dumps(msg))
        bad["messageId"] = _uuid(rng)
        kind = rng.choice(
            [
                F.INVALID_JSON,
                F.NOT_AN_OBJECT,
                F.MISSING_MESSAGE_ID,
                F.MISSING_IDS,
                F.UNKNOWN_TYPE,
                F.INVALID_TIMESTAMP,
                F.FUTURE_TIMESTAMP,
                F.MISSING_TIMESTAMP,
            ]
        )
        if kind == F.MISSING_MESSAGE_ID:
            del bad["messageId"]
        elif kind == F.MISSING_IDS:
            bad["userId"] = None
            bad.pop("anonymousId", None)
        elif kind == F.UNKNOWN_TYPE:
            bad["type"] = rng.choice(["trak", "pageview", "group", "Track"])
        elif kind == F.INVALID_TIMESTAMP:
            bad["timestamp"] = rng.choice(["2026-13-45T25:61:00Z", "yesterday", "10/31/2026 10:00", ""])
            if bad["timestamp"] == "":
                kind = F.MISSING_TIMESTAMP
        elif kind == F.FUTURE_TIMESTAMP:
            bad["timestamp"] = rng.choice(["2099-01-01T00:00:00.000Z", "2031-06-15T12:00:00Z"])
        elif kind == F.MISSING_TIMESTAMP:
            del bad["timestamp"]
        line = json.dumps(bad, ensure_ascii=False, separators=(",", ":"))
        if kind == F.INVALID_JSON:
            line = line[: rng.randrange(10, max(11, len(line) - 5))]
        elif kind == F.NOT_AN_OBJECT:
            line = json.dumps([bad.get("type"), bad.get("messageId")])
        self.w.event_lines[fname].append(line)
        self.w.faults.append(["events", fname, kind, line])

    def _local_start(self, rng, p: Person, day: dt.date) -> dt.datetime:
        hour = rng.choice(ARCHETYPES[p.archetype]["hours"])
        local = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)))
        return local.replace(tzinfo=ZoneInfo(p.tz)).astimezone(UTC)

    def _session(
        self,
        rng,
        p: Person,
        dev: Device,
        start: dt.datetime,
        uid: str | None,
        purchase: dict | None = None,
        identify: dict | None = None,
    ) -> dt.datetime:
        a = ARCHETYPES[p.archetype]
        t = start
        ref_kind = rng.choices(["direct", "search", "social", "other"], weights=[4, 3, 2, 1])[0]
        campaign = rng.choice(V.CAMPAIGNS) if rng.random() < 0.15 else None
        first = True

        def nxt():
            nonlocal t
            t += dt.timedelta(seconds=rng.uniform(*a["gap_s"]))
            return t

        def page(path, title, category=None):
            nonlocal first
            props = {"path": path, "title": title}
            if category:
                props["category"] = category
            pg = {
                "path": path,
                "url": f"https://shop.example.com{path}",
                "title": title,
                "referrer": rng.choice(V.REFERRERS[ref_kind]) if first else "https://shop.example.com/",
            }
            mtype = "screen" if dev.platform == "app" else "page"
            m = self._message(
                rng,
                p,
                dev,
                nxt(),
                mtype,
                user_id=uid,
                event=title,
                props=props,
                page=pg if mtype == "page" else None,
                tz=p.tz,
                campaign=campaign if first else None,
            )
            first = False
            self._emit(rng, m, dev.platform)

        def track(event, props):
            m = self._message(rng, p, dev, nxt(), "track", user_id=uid, event=event, props=props, tz=p.tz)
            self._emit(rng, m, dev.platform)

        def product_props(category):
            sku = f"SKU-{category[:3].upper()}-{rng.randrange(1000, 9999)}"
            return {
                "product_id": sku,
                "sku": sku,
                "category": category,
                "name": f"{category.title()} item {sku[-4:]}",
                "price": round(rng.uniform(9, 180), 2),
            }

        page("/", "Home")
        if identify is not None:
            m = self._message(rng, p, dev, nxt(), "identify", user_id=uid, traits=identify, tz=p.tz)
            self._emit(rng, m, dev.platform)
        n = rng.randint(*a["events"])
        for _ in range(n):
            r = rng.random()
            cat = rng.choice(p.categories) if rng.random() < 0.8 else rng.choice(V.CATEGORIES)
            if r < a["content"]:
                art = rng.choice(V.ARTICLES)
                page(f"/blog/{art}", art.replace("-", " ").title(), "content")
                if rng.random() < 0.6:
                    track(
                        TAXONOMY["video"],
                        {
                            "video_id": art,
                            "percent_watched": rng.choice([25, 50, 80, 95, 100])
                            if p.archetype == "content_reader"
                            else rng.choice([10, 25, 50, 80]),
                        },
                    )
                track(
                    TAXONOMY["scroll"],
                    {
                        "percent": rng.choice([50, 75, 90, 100])
                        if p.archetype == "content_reader"
                        else rng.choice([25, 50, 75])
                    },
                )
            elif r < a["content"] + 0.12:
                track(TAXONOMY["search"], {"query": rng.choice(V.CATEGORIES + ["sale", "gift", "black"])})
            else:
                props = product_props(cat)
                page(f"/p/{props['sku']}", props["name"], cat)
                track(TAXONOMY["view"], props)
                if rng.random() < (0.25 if p.archetype == "browser" else 0.12):
                    track(TAXONOMY["add"], {**props, "quantity": 1})
        if purchase is not None:
            for line in purchase["lines"]:
                track(
                    TAXONOMY["add"],
                    {
                        "product_id": line["sku"],
                        "sku": line["sku"],
                        "category": line["category"],
                        "price": line["price"],
                        "quantity": line["qty"],
                    },
                )
            page("/checkout", "Checkout")
            purchase["event_at"] = nxt()
            props = {
                "order_id": purchase["order_id"],
                "revenue": purchase["total"],
                "currency": "USD",
                "products": [
                    {"product_id": ln["sku"], "category": ln["category"], "price": ln["price"], "quantity": ln["qty"]}
                    for ln in purchase["lines"]
                ],
            }
            m = self._message(
                rng,
                p,
                dev,
                purchase["event_at"],
                "track",
                user_id=uid,
                event=TAXONOMY["purchase"],
                props=props,
                tz=p.tz,
            )
            purchase["event_arrived"] = self._emit(rng, m, dev.platform)
        return t

    # -- people ------------------------------------------------------------------------------------
    def _poisson_times(self, rng, rate_per_day: float, lo: dt.datetime, hi: dt.datetime) -> list[dt.datetime]:
        out, t = [], lo
        if rate_per_day <= 0:
            return out
        while True:
            t += dt.timedelta(days=rng.expovariate(rate_per_day))
            if t >= hi:
                return out
            out.append(t)

    def _simulate(self, rng, p: Person, household_tablet: Device | None) -> None:
        cfg, a = self.cfg, ARCHETYPES[p.archetype]
        devices = list(p.devices) + ([household_tablet] if household_tablet else [])
        login_session: dict[str, int] = {}
        for d in devices:
            if d.shared:
                login_session[d.anonymous_id] = 0
            elif p.registered and rng.random() < 0.96:
                login_session[d.anonymous_id] = rng.randrange(0, 3)
        session_starts = self._poisson_times(rng, 1.0 / a["session_days"], p.active_from, min(p.active_to, cfg.end))
        if not session_starts:
            session_starts = [p.active_from + dt.timedelta(hours=1)]
        seen_sessions: Counter = Counter()
        primary_weights = [3.0] + [1.0] * (len(devices) - 1)

        # Orders: a Poisson process over the active period; those after as_of are only truth.
        order_times = self._poisson_times(
            rng, p.purchase_rate, p.active_from, min(p.active_to, cfg.end + dt.timedelta(days=cfg.horizon_days))
        )
        guest_identified: set[str] = set()
        basket = random.Random(f"{cfg.seed}:basket:{p.index}")  # products: a stream of draws of its own
        p.favourites = {c: _catalogue_product(basket, c) for c in p.categories}
        for ot in order_times:
            if ot >= cfg.end:
                if ot < cfg.end + dt.timedelta(days=cfg.horizon_days):
                    p.future_orders += 1
                continue
            lines = []
            for _ in range(rng.choices([1, 2, 3, 4], weights=[5, 3, 1, 1])[0]):
                cat = rng.choice(p.categories)
                rng.randrange(1000, 9999)  # the draw of the catalogue-free generator, kept: the rest stays as it was
                lines.append(
                    {
                        "sku": _basket_product(basket, p, cat, lines),
                        "category": cat,
                        "price": round(rng.uniform(12, 160), 2),
                        "qty": rng.choice([1, 1, 1, 2]),
                    }
                )
            total = round(sum(ln["price"] * ln["qty"] for ln in lines), 2)
            status = rng.choices(["completed", "refunded", "cancelled"], weights=[94, 4, 2])[0]
            channel = "store" if rng.random() < 0.08 else None
            guest = (not p.registered) or rng.random() < 0.12
            order = {
                "order_id": f"O{_scramble(p.index * 64 + len(p.orders), 3):08d}-{rng.randrange(10, 99)}",
                "lines": lines,
                "total": total,
                "status": status,
                "guest": guest,
                "at": ot,
                "customer_id": None if guest else rng.choice(p.customer_ids),
                "email": p.email if guest or rng.random() < 0.7 else "",
                "in_export": True,
            }
            if channel is None:
                dev = rng.choices(devices, weights=primary_weights)[0]
                if dev.shared:
                    dev = devices[0]
                order["channel"] = "app" if dev.platform == "app" else "web"
                uid = p.user_id if dev.anonymous_id in login_session else None
                identify = None
                if guest and dev.anonymous_id not in guest_identified and uid is None:
                    identify = {"email": _email_variant(p.email, rng) if rng.random() < 0.3 else p.email}
                    guest_identified.add(dev.anonymous_id)
                start = ot - dt.timedelta(minutes=rng.uniform(3, 12))
                self._session(rng, p, dev, start, uid, purchase=order, identify=identify)
                if cfg.end - ot < dt.timedelta(days=1) and rng.random() < 0.5 and order["event_arrived"]:
                    # Export lag: only the event knows this order yet, and as of as_of it can only
                    # be completed (a refund or cancellation would come later). An order whose
                    # event has not arrived either stays in the export: no input would know it.
                    order["in_export"] = False
                    order["status"] = "completed"
            else:
                order["channel"] = "store"
            p.orders.append(order)

        tablet_pending = household_tablet is not None  # each household member uses the tablet at least once
        for start in session_starts:
            day = start.date()
            st = self._local_start(rng, p, day)
            if not (cfg.start <= st < cfg.end) or st < p.active_from - dt.timedelta(days=1):
                continue
            dev = household_tablet if tablet_pending else rng.choices(devices, weights=primary_weights)[0]
            tablet_pending = False
            k = seen_sessions[dev.anonymous_id]
            seen_sessions[dev.anonymous_id] += 1
            logged = dev.anonymous_id in login_session and k >= login_session[dev.anonymous_id]
            identify = None
            if logged and k == login_session[dev.anonymous_id]:
                identify = {
                    "email": _email_variant(p.email, rng) if rng.random() < 0.3 else p.email,
                    "firstName": p.first_name,
                    "lastName": p.last_name,
                }
                if p.phone is not None and rng.random() < 0.5:
                    identify["phone"] = _phone_text(p.phone, rng)
            self._session(rng, p, dev, st, p.user_id if logged else None, identify=identify)

    def _crm_rows(self, rng, p: Person, namesake_of: Person | None, duplicate_kind: str | None) -> None:
        cfg = self.cfg
        signup = p.active_from - dt.timedelta(days=rng.uniform(0, 400))
        updated = signup + dt.timedelta(days=rng.uniform(0, 30))
        if updated > cfg.end - dt.timedelta(days=30):
            updated = cfg.end - dt.timedelta(days=30, hours=rng.uniform(1, 200))
        if namesake_of is not None:
            p.first_name, p.last_name = namesake_of.first_name, namesake_of.last_name
        base_opt = p.personalization_opt_in

        def bool_text(v: bool) -> str:
            return (
                rng.choice(["true", "true", "TRUE", "1", "yes"])
                if v
                else rng.choice(["false", "false", "FALSE", "0", "no"])
            )

        def row(cid, email, phone, first, last, upd, mkt, pers):
            return [
                cid,
                email,
                phone,
                first,
                last,
                p.birth_date.isoformat(),
                p.street,
                p.city,
                p.postcode,
                p.country,
                signup.strftime("%Y-%m-%dT%H:%M:%SZ"),
                upd.strftime("%Y-%m-%dT%H:%M:%SZ"),
                bool_text(mkt),
                bool_text(pers),
            ]

        phone_text = _phone_text(p.phone, rng) if p.phone else ""
        mkt = rng.random() < 0.6
        base = f"crm/customers_base-p{self.w.part:03d}.csv"
        delta = f"crm/customers_delta_{cfg.as_of.isoformat()}-p{self.w.part:03d}.csv"
        self.w.crm_rows[base].append(
            row(p.customer_ids[0], p.email, phone_text, p.first_name, p.last_name, updated, mkt, base_opt)
        )
        self._seen(p, "customer_id", p.customer_ids[0])
        self._seen(p, "email", p.email)
        if p.phone:
            self._seen(p, "phone", _e164(p.phone))
        # A later export changes some records: consent, surname, phone format.
        if rng.random() < 0.12:
            r = rng.random()
            if r < 0.45:
                p.personalization_opt_in = not base_opt if rng.random() < 0.5 else False
                self.w.counts["consent_changed_in_delta"] += 1
            elif r < 0.7:
                p.last_name = rng.choice(V.LAST_NAMES)
            later = cfg.end - dt.timedelta(days=rng.uniform(1, 25))
            self.w.crm_rows[delta].append(
                row(
                    p.customer_ids[0],
                    p.email,
                    _phone_text(p.phone, rng) if p.phone else "",
                    p.first_name,
                    p.last_name,
                    later,
                    mkt,
                    p.personalization_opt_in,
                )
            )
            self.w.counts["crm_delta_rows"] += 1
        if duplicate_kind is not None:
            dup_id = f"C{_scramble(p.index * 2 + 1, 2):08d}"
            p.customer_ids.append(dup_id)
            self._seen(p, "customer_id", dup_id, linkable=True)
            first, last, phone, email = p.first_name, p.last_name, phone_text, p.email
            if duplicate_kind == "email_case":
                email = _email_variant(p.email, rng).strip()
            elif duplicate_kind == "phone_format":
                email = (
                    _ascii(f"{p.first_name}{p.last_name[0]}").lower().replace(" ", "")
                    + f"{_scramble(p.index, 8) % 1_000_000}@{rng.choice(V.FREEMAIL_DOMAINS)}"
                )
                phone = _phone_text(p.phone, rng)
                self._seen(p, "email", email.lower())
            else:  # name_typo: a different email, no phone; only names, birth date and address tie them
                email = (
                    _ascii(f"{last}.{first}").lower().replace(" ", "").replace("'", "")
                    + f"{_scramble(p.index, 9) % 1_000_000}@{rng.choice(V.FREEMAIL_DOMAINS)}"
                )
                phone = ""
                if rng.random() < 0.5:
                    first = _typo(first, rng)
                else:
                    last = _typo(last, rng)
                self._seen(p, "email", email.lower())
            self.w.crm_rows[base].append(
                row(dup_id, email, phone, first, last, updated - dt.timedelta(days=90), mkt, base_opt)
            )
            self.w.counts[f"crm_duplicate_{duplicate_kind}"] += 1

    def run(self) -> ChunkWriter:
        cfg, w = self.cfg, self.w
        people: list[Person] = []
        rngs: list[random.Random] = []
        for idx in range(self.lo, self.hi):
            rng = random.Random(f"{cfg.seed}:{idx}")
            people.append(_make_person(cfg, idx, rng))
            rngs.append(rng)
        chunk_rng = random.Random(f"{cfg.seed}:chunk:{self.lo}")
        registered = [p for p in people if p.registered]

        # Households: two registered people of one city share a tablet and both log in on it.
        tablets: dict[int, Device] = {}
        households: list[tuple[Device, Person, Person]] = []
        n_households = max(1 if len(registered) >= 4 else 0, len(people) // 400)
        candidates = chunk_rng.sample(registered, min(len(registered), 2 * n_households))
        for i in range(0, len(candidates) - 1, 2):
            a, b = candidates[i], candidates[i + 1]
            if b.country != a.country and b.phone is not None:
                b.phone = _phone(a.country, b.index)  # a phone of the country they now live in
            b.country, b.tz, b.city, b.postcode, b.street = a.country, a.tz, a.city, a.postcode, a.street
            b.last_name = a.last_name
            tab = Device(
                _uuid(chunk_rng),
                "tablet",
                "web",
                V.USER_AGENTS["tablet"][0],
                f"198.51.{chunk_rng.randrange(100, 200)}.7",
                shared=True,
            )
            tablets[a.index] = tablets[b.index] = tab
            households.append((tab, a, b))

        namesakes: dict[int, Person] = {}
        for p in registered:
            if chunk_rng.random() < 0.01:
                other = chunk_rng.choice(registered)
                if other.index != p.index and other.birth_date != p.birth_date and other.city != p.city:
                    namesakes[p.index] = other
                    w.counts["namesake_pairs"] += 1
        dup_kinds = {
            p.index: chunk_rng.choice(["email_case", "phone_format", "name_typo"])
            for p in registered
            if chunk_rng.random() < 0.06
        }
        for idx, kind in list(dup_kinds.items()):
            if kind == "phone_format" and people[idx - self.lo].phone is None:
                dup_kinds[idx] = "email_case"

        for p, rng in zip(people, rngs, strict=True):
            if p.registered:
                self._crm_rows(rng, p, namesakes.get(p.index), dup_kinds.get(p.index))
            self._simulate(rng, p, tablets.get(p.index))
        self._orders(people)
        for tab, a, b in households:
            if tab.anonymous_id in self.used_shared:
                w.truth_identifiers.append(["anonymous_id", tab.anonymous_id, a.key, True, True, f"{a.key}|{b.key}"])
                w.counts["shared_tablets"] += 1
        self._bots(chunk_rng)
        self._junk(chunk_rng, people)
        self._privacy(chunk_rng, people)
        self._plant_csv_faults(chunk_rng)
        self._truth(people)
        return w

    def _orders(self, people: list[Person]) -> None:
        for p in people:
            rng = random.Random(f"{self.cfg.seed}:orders:{p.index}")
            for o in p.orders:
                if not o["in_export"]:
                    self.w.counts["orders_only_as_events"] += 1
                    continue
                fname = f"orders/orders_{o['at'].strftime('%Y-%m')}-p{self.w.part:03d}.csv"
                email = o["email"]
                if email and rng.random() < 0.2:
                    email = _email_variant(email, rng)
                for ln in o["lines"]:
                    self.w.order_rows[fname].append(
                        [
                            o["order_id"],
                            o["customer_id"] or "",
                            email,
                            o["at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                            f"{ln['price'] * ln['qty']:.2f}",
                            "USD",
                            o["status"],
                            o["channel"],
                            ln["sku"],
                            str(ln["qty"]),
                        ]
                    )
                if o["email"]:
                    self._seen(p, "email", p.email)
                if o["customer_id"]:
                    self._seen(p, "customer_id", o["customer_id"])
                self.w.counts["orders_in_export"] += 1
                self.w.counts[f"orders_{o['status']}"] += 1
                if o["guest"]:
                    self.w.counts["guest_orders"] += 1
                if o["status"] == "refunded" and o["channel"] != "store":
                    self.w.counts["refunded_orders_with_completed_event"] += 1

    def _bots(self, rng: random.Random) -> None:
        n = max(1, (self.hi - self.lo) // 200)
        for _ in range(n):
            by_ua = rng.random() < 0.6
            ua = rng.choice(V.BOT_USER_AGENTS) if by_ua else V.USER_AGENTS["desktop"][0]
            dev = Device(_uuid(rng), "desktop", "web", ua, f"203.0.113.{rng.randrange(1, 254)}")
            t = self.cfg.end - dt.timedelta(days=rng.uniform(1, 60), hours=rng.uniform(0, 23))
            for i in range(rng.randrange(150, 400)):
                t += dt.timedelta(seconds=rng.uniform(0.2, 1.5))
                path = f"/p/SKU-{rng.randrange(1000, 9999)}" if i % 3 else f"/c/{rng.choice(V.CATEGORIES)}"
                m = self._message(
                    rng,
                    None,
                    dev,
                    t,
                    "page",
                    user_id=None,
                    event=path,
                    props={"path": path},
                    page={"path": path, "url": f"https://shop.example.com{path}", "referrer": ""},
                )
                self._emit(rng, m, "web")
            self.w.truth_bots.append([dev.anonymous_id, ua, "user_agent" if by_ua else "event_rate"])
            self.w.counts["bots"] += 1

    def _junk(self, rng: random.Random, people: list[Person]) -> None:
        """Values broken clients and staff send: they must never link different people."""
        anon = [p for p in people if not p.registered and p.devices]
        for p in rng.sample(anon, min(len(anon), max(2, len(people) // 300))):
            dev = p.devices[0]
            t = max(p.active_from, self.cfg.end - dt.timedelta(days=20))
            if t >= self.cfg.end:
                continue
            junk = rng.choice(["null", "0", "anonymous", "undefined"])
            self._session(rng, p, dev, t + dt.timedelta(hours=1), junk)
            self.w.counts["junk_user_id_sessions"] += 1
        reg = [p for p in people if p.registered]
        fname = f"crm/customers_base-p{self.w.part:03d}.csv"
        for p in rng.sample(reg, min(len(reg), max(2, len(people) // 500))):
            cid = f"C{_scramble(p.index * 2 + 1, 5):08d}"
            # A second store account created at a till, with a placeholder email and no phone.
            self.w.crm_rows[fname].append(
                [
                    cid,
                    rng.choice(["test@test.com", "noemail@example.com", "none@none.com"]),
                    "",
                    p.first_name,
                    p.last_name,
                    "",
                    "",
                    "",
                    "",
                    p.country,
                    "2026-01-01T00:00:00Z",
                    "2026-01-01T00:00:00Z",
                    "false",
                    "true",
                ]
            )
            p.customer_ids.append(cid)
            self._seen(p, "customer_id", cid, linkable=False)
            self.w.counts["crm_placeholder_email_rows"] += 1

    def _privacy(self, rng: random.Random, people: list[Person]) -> None:
        eligible = [p for p in people if any(p.identifiers.values())]
        for p in rng.sample(eligible, min(len(eligible), max(1, len(people) // 200))):
            kind, value = rng.choice(sorted(k for k, linkable in p.identifiers.items() if linkable))
            if kind == "email" and rng.random() < 0.5:
                value = _email_variant(value, rng).strip()
            elif kind == "phone" and p.phone is not None:
                value = _phone_text(p.phone, rng)
            req = self.cfg.end - dt.timedelta(days=rng.uniform(0.5, 5))
            self.w.privacy_rows.append([req.strftime("%Y-%m-%dT%H:%M:%SZ"), kind, value])
            p.erased = True
            self.w.counts["erasure_requests"] += 1

    def _plant_csv_faults(self, rng: random.Random) -> None:
        """Corrupted twins of valid rows, one of each kind, then more at random."""

        def twin(rows_by_file, originals, idx_mutations):
            files = [f for f, rows in originals.items() if rows]
            if not files:
                return
            for kind, mutate, *column in idx_mutations:
                fname = rng.choice(files)
                row = list(rng.choice(originals[fname]))  # never a twin of a twin: one fault per row
                raw = mutate(row)
                rows_by_file[fname].append(raw)
                self.w.faults.append([fname.split("/")[0], fname, kind, _csv_line(raw), *column])

        # A bad optional field (the third item: its column) nulls that field; the record loads.
        crm = [
            (F.INVALID_EMAIL, lambda r: _set(r, 1, r[1].replace("@", "_at_")), "email"),
            (F.INVALID_DATE, lambda r: _set(r, 5, rng.choice(["1985-02-31", "31/12/1985", "unknown"])), "birth_date"),
            (F.MISSING_REQUIRED, lambda r: _set(r, 0, "")),
            (F.INVALID_BOOLEAN, lambda r: _set(r, 13, rng.choice(["maybe", "ja", "2"])), "personalization_opt_in"),
            (F.INVALID_PHONE, lambda r: _set(r, 2, rng.choice(["call me", "12", "n/a-555"])), "phone"),
            (F.WRONG_FIELD_COUNT, lambda r: r[:9]),
        ]
        orders = [
            (F.INVALID_NUMBER, lambda r: _set(_set(r, 0, r[0] + "X"), 4, rng.choice(["12,50", "abc", "£10"]))),
            (F.INVALID_VALUE, lambda r: _set(_set(r, 0, r[0] + "Y"), 6, rng.choice(["pending", "shipped"]))),
            (F.MISSING_REQUIRED, lambda r: _set(r, 0, "")),
            (F.INVALID_DATE, lambda r: _set(_set(r, 0, r[0] + "Z"), 3, rng.choice(["2026-02-30T10:00:00Z", "soon"]))),
            (F.MISSING_CUSTOMER, lambda r: _set(_set(_set(r, 0, r[0] + "W"), 1, ""), 2, "")),
            (F.WRONG_FIELD_COUNT, lambda r: r + ["extra", "fields"]),
        ]
        n_rounds = max(1, (self.hi - self.lo) // 1000)
        crm_originals = {f: list(rows) for f, rows in self.w.crm_rows.items()}
        order_originals = {f: list(rows) for f, rows in self.w.order_rows.items()}
        for _ in range(n_rounds):
            twin(self.w.crm_rows, crm_originals, crm)
            twin(self.w.order_rows, order_originals, orders)
        if self.w.privacy_rows:
            bad = [[self.w.privacy_rows[0][0], "ssn", "123-45-6789"], [self.w.privacy_rows[0][0], "email", ""]]
            self.w.privacy_rows.extend(bad)
            self.w.faults.append(
                ["privacy", f"privacy/erasure_requests-p{self.w.part:03d}.csv", F.INVALID_VALUE, _csv_line(bad[0])]
            )
            self.w.faults.append(
                ["privacy", f"privacy/erasure_requests-p{self.w.part:03d}.csv", F.MISSING_REQUIRED, _csv_line(bad[1])]
            )

    def _truth(self, people: list[Person]) -> None:
        for p in people:
            for (kind, value), linkable in sorted(p.identifiers.items()):
                self.w.truth_identifiers.append([kind, value, p.key, linkable, False, ""])
            completed = [o for o in p.orders if o["status"] == "completed"]
            freq = len(completed)
            money = round(sum(o["total"] for o in completed), 2)
            last_order = max((o["at"] for o in completed), default=None)
            if p.devices:
                primary = p.devices[0].device_type
            else:
                primary = ""
            self.w.truth_persons.append(
                [
                    p.key,
                    p.archetype,
                    p.registered,
                    p.country,
                    p.tz,
                    primary,
                    len(p.devices),
                    p.personalization_opt_in if p.registered else "",
                    p.erased,
                    freq,
                    f"{money:.2f}",
                    last_order.isoformat() if last_order else "",
                    p.future_orders > 0,
                    p.future_orders,
                    "|".join(sorted(p.favourites.values())),
                ]
            )


def _set(row: list[str], i: int, value: str) -> list[str]:
    row = list(row)
    row[i] = value
    return row


def _csv_line(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue()


def _run_chunk(args) -> ChunkWriter:
    cfg, part, lo, hi = args
    return Simulator(cfg, part, lo, hi).run()


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def _write_chunk(out: Path, w: ChunkWriter) -> None:
    for fname, lines in sorted(w.event_lines.items()):
        _write_lines(out / fname, lines)
    for fname, rows in sorted(w.crm_rows.items()):
        _write_csv(out / fname, CRM_COLUMNS, rows)
    for fname, rows in sorted(w.order_rows.items()):
        _write_csv(out / fname, ORDER_COLUMNS, rows)
    if w.privacy_rows:
        _write_csv(out / f"privacy/erasure_requests-p{w.part:03d}.csv", PRIVACY_COLUMNS, w.privacy_rows)


def _write_whole_file_faults(out: Path, faults: list[list[str]], counts: Counter) -> None:
    """Three files that cannot be read at all. Their content repeats rows found elsewhere."""
    bad_gz = out / "events/collector-upload-truncated.jsonl.gz"
    bad_gz.write_bytes(b"this upload was interrupted; it is not a gzip stream\n")
    faults.append(["events", "events/collector-upload-truncated.jsonl.gz", F.FILE_NOT_GZIP, ""])
    latin = out / "crm/legacy_export_latin1.csv"
    latin.write_bytes(
        (
            ",".join(CRM_COLUMNS)
            + "\n"
            + "C99999999,rene@example.com,,Ren\xe9e,Lef\xe8vre,1970-01-01,1 Rue,Paris,75001,FR,"
            "2020-01-01T00:00:00Z,2020-01-01T00:00:00Z,true,true\n"
        ).encode("latin-1")
    )
    faults.append(["crm", "crm/legacy_export_latin1.csv", F.FILE_NOT_UTF8, ""])
    first_orders = sorted((out / "orders").glob("*.csv"))[0]
    body = first_orders.read_text(encoding="utf-8").splitlines()[1:4]
    (out / "orders/orders_manual_noheader.csv").write_text("\n".join(body) + "\n", encoding="utf-8")
    faults.append(["orders", "orders/orders_manual_noheader.csv", F.FILE_MISSING_HEADER, ""])
    counts["malformed_files"] += 3


def generate(out_dir: Path | str, cfg: GeneratorConfig, truth_dir: Path | str | None = None, progress=None) -> dict:
    """Write landing data to `out_dir` and ground truth to `truth_dir` (default: sibling `truth/`)."""
    out = Path(out_dir)
    truth = Path(truth_dir) if truth_dir else out.parent / "truth"
    for folder in ("events", "crm", "orders", "enrichment", "privacy"):
        if (out / folder).exists():
            shutil.rmtree(out / folder)
        (out / folder).mkdir(parents=True)
    truth.mkdir(parents=True, exist_ok=True)

    bounds = [
        (cfg, i, lo, min(cfg.persons, lo + cfg.chunk_size))
        for i, lo in enumerate(range(0, cfg.persons, cfg.chunk_size))
    ]
    counts: Counter = Counter()
    faults: list[list[str]] = []
    files = {"identifiers": [], "persons": [], "bots": []}

    def consume(w: ChunkWriter) -> None:
        _write_chunk(out, w)
        counts.update(w.counts)
        faults.extend(w.faults)
        files["identifiers"].extend(w.truth_identifiers)
        files["persons"].extend(w.truth_persons)
        files["bots"].extend(w.truth_bots)
        if progress:
            progress(w.part, len(bounds))

    if cfg.workers > 1 and len(bounds) > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for w in pool.map(_run_chunk, bounds):
                consume(w)
    else:
        for b in bounds:
            consume(_run_chunk(b))

    _write_csv(
        out / "enrichment/firmographics.csv",
        ENRICHMENT_COLUMNS,
        [[d, c, i, str(e), str(r)] for d, c, i, e, r in V.COMPANIES]
        + [["initech.com", "Initech", "Financial Services", "lots", "410000000"]],
    )
    faults.append(
        [
            "enrichment",
            "enrichment/firmographics.csv",
            F.INVALID_NUMBER,
            "initech.com,Initech,Financial Services,lots,410000000",
            "employee_count",
        ]
    )
    _write_whole_file_faults(out, faults, counts)

    for f in faults:
        counts[f"fault_{f[0]}_{f[2]}"] += 1
    _write_csv(
        truth / "identifiers.csv",
        ["identifier_type", "identifier", "person_key", "linkable", "shared_device", "shared_by"],
        files["identifiers"],
    )
    _write_csv(
        truth / "persons.csv",
        [
            "person_key",
            "archetype",
            "registered",
            "country",
            "timezone",
            "primary_device_type",
            "n_devices",
            "personalization_opt_in",
            "erased",
            "frequency_orders",
            "monetary_total",
            "last_order_at",
            "purchased_next_30d",
            "orders_next_30d",
            "favourite_products",
        ],
        files["persons"],
    )
    _write_csv(truth / "bots.csv", ["anonymous_id", "user_agent", "detectable_by"], files["bots"])
    _write_csv(
        truth / "faults.csv",
        ["source", "file", "reason_code", "raw", "column"],
        [f + [""] * (5 - len(f)) for f in faults],
    )
    summary = {
        "seed": cfg.seed,
        "persons": cfg.persons,
        "as_of": cfg.as_of.isoformat(),
        "history_days": cfg.history_days,
        "horizon_days": cfg.horizon_days,
        "event_taxonomy": TAXONOMY,
        "counts": dict(sorted(counts.items())),
        "planted_faults": len(faults),
    }
    (truth / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
