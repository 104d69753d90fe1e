"""Does the clustering find behaviour groups that are really there, on events not shaped by the
project's own sample generator?

    .venv/bin/python benchmarks/planted_behaviour.py --persons 3000

A small generator of its own (not orchestration/sample_data) writes a landing zone in the input
contract's layout (docs/input_contract.md): Segment-spec JSON events in weekly files
(events/planted-<year>w<week>.jsonl[.gz]; track, page and identify messages with userId,
anonymousId, messageId, timestamp, receivedAt and a context holding only the user agent, time zone,
locale, IP and library), one orders CSV with a line per row and its columns in its own order, and
one CRM CSV with only the columns it needs. Each person is one userId (identity is perfect: one
userId, one customer_id, one email, linked by an identify message, the CRM and the orders), so the
adjusted Rand index measures clustering, not identity resolution.

Every person belongs to one of six planted behaviour groups of unequal sizes (GROUPS: frequent
buyers, cart abandoners, night-time mobile content readers, weekday office-hours desktop
researchers, video watchers, one-off visitors) over 120 days. Per-person rates (sessions, events
per session, orders, the mix of actions, device, hour of day, deep-scroll and video-completion
habits) are drawn from gamma, lognormal, beta and Dirichlet distributions around the group's
values, so groups overlap. The seed is fixed.

The whole pipeline then runs with ML into a fresh warehouse and MLflow store under
data/bench/planted_behaviour/, and the benchmark reports:
- the clusters the champion chose, and the ARI of marts.cluster_assignments against the planted
  groups (person_id to group through marts.identity_map's user_id rows), with the crosstab;
- references in the same run: KMeans with k=6 (n_init=10, StandardScaler) on 16 simple per-person
  features computed here from the generated events and orders (REFERENCE_FEATURES; counts log1p),
  and KMeans k=6 on the pipeline's own model-ready features at the scoring date (numeric columns
  except btyd_*; scaled, and Yeo-Johnson as ml.clustering does), which tells a feature-set problem
  from a selection-rule problem; and the same without the columns that restate another
  (ml.features.clustering_columns), and with the behaviour it has no column for added (LOST_FEATURES);
- every clustering candidate of ml.clustering refitted on the same frame with the pipeline's
  settings (what silhouette chose, and which candidate would have scored best against the truth);
- per model-ready feature: spread and how much of it the planted groups explain (eta squared), to
  spot features that are constant or lost for this data; and the quarantine by reason.
Results go to benchmarks/results/planted_behaviour.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.preprocessing import PowerTransformer, StandardScaler  # noqa: E402

from benchmarks._pipeline import run_pipeline, save_result  # noqa: E402

UTC = dt.UTC
AS_OF = dt.date(2026, 11, 30)  # the last day with events; the pipeline's scoring date
HISTORY_DAYS = 120
# Sessions start at least an hour before midnight UTC after AS_OF, so that no event dates a later day.
LAST_START = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time(), UTC) - dt.timedelta(hours=1)
SEED = 20261130
ACTIONS = ("page", "view", "search", "add", "video", "scroll")


@dataclass(frozen=True)
class Group:
    share: float
    sessions_per_day: float  # mean over persons (gamma); 0 = a single visit
    hour: float  # centre of the local hour of day
    hour_sd: float
    weekend: float  # session rate on Saturday and Sunday, relative to weekdays
    mobile: float  # mean share of sessions on a phone (beta)
    events: float  # mean actions per session (lognormal per person, Poisson per session)
    mix: dict[str, float]  # share of each action (Dirichlet per person)
    orders_per_day: float  # mean over persons (gamma)
    deep_scroll: float  # chance a scroll reaches 75% or more (beta per person)
    video_complete: float  # chance a video is watched to 80% or more (beta per person)
    tablet: float = 0.0  # chance the person's second device is a tablet instead of a desktop


GROUPS: dict[str, Group] = {
    "frequent_buyer": Group(
        0.35,
        0.20,
        19.5,
        3.0,
        1.2,
        0.40,
        5.0,
        dict(page=0.15, view=0.50, search=0.08, add=0.15, video=0.04, scroll=0.08),
        0.10,
        0.30,
        0.25,
    ),
    "cart_abandoner": Group(
        0.25,
        0.18,
        14.0,
        4.0,
        1.0,
        0.55,
        7.0,
        dict(page=0.12, view=0.45, search=0.08, add=0.28, video=0.02, scroll=0.05),
        1 / 120,
        0.30,
        0.25,
    ),
    "night_mobile_reader": Group(
        0.15,
        0.30,
        0.5,
        1.5,
        1.0,
        0.90,
        4.0,
        dict(page=0.45, view=0.06, search=0.02, add=0.01, video=0.06, scroll=0.40),
        0.0,
        0.85,
        0.30,
    ),
    "office_researcher": Group(
        0.12,
        0.35,
        12.5,
        2.0,
        0.1,
        0.06,
        9.0,
        dict(page=0.12, view=0.50, search=0.33, add=0.02, video=0.01, scroll=0.02),
        0.0,
        0.30,
        0.20,
    ),
    "video_watcher": Group(
        0.08,
        0.20,
        20.5,
        2.5,
        2.0,
        0.45,
        3.0,
        dict(page=0.25, view=0.08, search=0.05, add=0.01, video=0.55, scroll=0.06),
        0.0,
        0.30,
        0.85,
        0.5,
    ),
    "one_off_visitor": Group(
        0.05,
        0.0,
        15.0,
        5.0,
        1.0,
        0.50,
        2.5,
        dict(page=0.45, view=0.40, search=0.10, add=0.03, video=0.01, scroll=0.01),
        0.0,
        0.30,
        0.25,
    ),
}
ONE_OFF_BUYS = 0.15  # share of one-off visitors who buy in their visit

ZONES = [
    ("Europe/Berlin", "DE", "de-DE", 4),
    ("America/Chicago", "US", "en-US", 4),
    ("Asia/Tokyo", "JP", "ja-JP", 2),
    ("Australia/Sydney", "AU", "en-AU", 1),
    ("America/Sao_Paulo", "BR", "pt-BR", 2),
    ("Europe/Madrid", "ES", "es-ES", 2),
]
CATEGORIES = [
    "garden",
    "kitchen",
    "outdoor",
    "books",
    "audio",
    "toys",
    "fitness",
    "lighting",
    "tools",
    "pets",
    "beauty",
    "stationery",
]
ARTICLES = [
    "how-to-repot",
    "winter-running",
    "small-kitchens",
    "reading-lists",
    "camping-checklist",
    "desk-lamps",
    "quiet-headphones",
    "puppy-first-week",
    "skin-routine",
    "bullet-journal",
]
DESKTOP_UA = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
]
MOBILE_UA = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile "
    "Safari/537.36",
]
TABLET_UA = [
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Mobile/15E148 Safari/604.1"
]

# The reference's per-person features, computed from what this generator wrote (not from the warehouse).
COUNT_FEATURES = [
    "sessions",
    "events",
    "page_views",
    "product_views",
    "add_to_cart",
    "searches",
    "videos",
    "scrolls",
    "orders",
    "spend",
]
SHARE_FEATURES = [
    "night_share",
    "mobile_share",
    "weekend_share",
    "business_hours_share",
    "video_completion_share",
    "deep_scroll_share",
]
REFERENCE_FEATURES = COUNT_FEATURES + SHARE_FEATURES
# Behaviour the events carry but marts.user_features_model_ready has no numeric column for: how many
# videos and scrolls (only completion and depth shares, 0 when there were none).
LOST_FEATURES = ["videos", "scrolls"]


@dataclass
class Device:
    anonymous_id: str
    user_agent: str
    kind: str  # mobile | desktop | tablet
    ip: str


@dataclass
class Person:
    index: int
    group: str
    user_id: str
    customer_id: str
    email: str
    tz: str
    country: str
    locale: str
    devices: dict[str, Device]
    categories: list[str]
    counts: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            COUNT_FEATURES + ["night", "mobile", "weekend", "business_hours", "videos_completed", "deep_scrolls"], 0.0
        )
    )
    identified: bool = False


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class PlantedWriter:
    """Writes the landing zone while it simulates, and keeps each person's reference counts."""

    def __init__(self, out: Path, seed: int):
        self.out = out
        self.rng = np.random.default_rng(seed)
        self.handles: dict[str, object] = {}
        self.order_rows: list[list[str]] = []
        self.crm_rows: list[list[str]] = []
        self.messages = 0
        self.orders = 0
        self.start = AS_OF - dt.timedelta(days=HISTORY_DAYS - 1)

    # -- output ------------------------------------------------------------------------------------
    def _file(self, ts: dt.datetime):
        year, week, _ = ts.isocalendar()
        name = f"events/planted-{year}w{week:02d}.jsonl" + (".gz" if week % 2 == 0 else "")
        if name not in self.handles:
            path = self.out / name
            self.handles[name] = (
                gzip.open(path, "wt", encoding="utf-8") if name.endswith(".gz") else open(path, "w", encoding="utf-8")
            )
        return self.handles[name]

    def _uuid(self) -> str:
        return str(uuid.UUID(bytes=self.rng.bytes(16), version=4))

    def _emit(
        self,
        p: Person,
        dev: Device,
        ts: dt.datetime,
        mtype: str,
        event: str | None = None,
        props: dict | None = None,
        traits: dict | None = None,
        page: dict | None = None,
    ) -> None:
        msg: dict = {"type": mtype, "messageId": self._uuid(), "userId": p.user_id, "anonymousId": dev.anonymous_id}
        if mtype == "track":
            msg["event"] = event
        elif mtype == "page":
            msg["name"] = event
        msg["timestamp"] = _iso(ts)
        msg["receivedAt"] = _iso(ts + dt.timedelta(milliseconds=int(self.rng.integers(50, 2500))))
        if props is not None:
            msg["properties"] = props
        if traits is not None:
            msg["traits"] = traits
        ctx = {
            "userAgent": dev.user_agent,
            "timezone": p.tz,
            "locale": p.locale,
            "ip": dev.ip,
            "library": {"name": "planted-bench", "version": "1.0.0"},
        }
        if page is not None:
            ctx["page"] = page
        msg["context"] = ctx
        self._file(ts).write(json.dumps(msg, separators=(",", ":")) + "\n")
        self.messages += 1
        if mtype == "identify":
            return
        local = ts.astimezone(ZoneInfo(p.tz))
        c = p.counts
        c["events"] += 1
        c["night"] += local.hour < 6 or local.hour >= 22
        c["mobile"] += dev.kind == "mobile"
        c["weekend"] += local.isoweekday() >= 6
        c["business_hours"] += local.isoweekday() <= 5 and 9 <= local.hour < 17

    def close(self) -> None:
        for h in self.handles.values():
            h.close()
        _write_csv(
            self.out / "orders/orders_export.csv",
            ["ordered_at", "order_id", "status", "amount", "currency", "customer_id", "email", "channel"],
            self.order_rows,
        )
        _write_csv(
            self.out / "crm/customers.csv",
            ["customer_id", "email", "country", "updated_at", "marketing_opt_in", "personalization_opt_in"],
            self.crm_rows,
        )

    # -- persons -----------------------------------------------------------------------------------
    def person(self, index: int, group: str) -> tuple[Person, dict]:
        rng, g = self.rng, GROUPS[group]
        zone = ZONES[rng.choice(len(ZONES), p=np.array([z[3] for z in ZONES]) / sum(z[3] for z in ZONES))]
        uid = f"usr_{uuid.UUID(bytes=rng.bytes(16)).hex[:20]}"
        second = "tablet" if rng.random() < g.tablet else "desktop"
        devices = {
            "mobile": Device(
                self._uuid(), str(rng.choice(MOBILE_UA)), "mobile", f"10.{index % 250}.{index // 250 % 250}.7"
            ),
            second: Device(
                self._uuid(),
                str(rng.choice(TABLET_UA if second == "tablet" else DESKTOP_UA)),
                second,
                f"172.16.{index % 250}.{index // 250 % 250}",
            ),
        }
        breadth = 0.6 if group == "office_researcher" else 0.15
        p = Person(
            index,
            group,
            uid,
            f"CU-{100000 + index * 7:07d}",
            f"{uid[4:14]}@mail{index % 7}.example.net",
            zone[0],
            zone[1],
            zone[2],
            devices,
            list(rng.choice(CATEGORIES, size=3, replace=False)),
        )

        def beta(mean: float, conc: float = 10.0) -> float:
            return float(rng.beta(mean * conc, (1 - mean) * conc))

        habits = {
            "sessions_per_day": float(rng.gamma(3.0, g.sessions_per_day / 3.0)) if g.sessions_per_day else 0.0,
            "hour": (g.hour + rng.normal(0, 1.0)) % 24,
            "mobile": beta(g.mobile, 12.0),
            "events": float(g.events * rng.lognormal(0, 0.35)),
            "mix": rng.dirichlet(np.array([g.mix[a] for a in ACTIONS]) * 25 + 0.3),
            "orders_per_day": float(rng.gamma(4.0, g.orders_per_day / 4.0)) if g.orders_per_day else 0.0,
            "deep_scroll": beta(g.deep_scroll),
            "video_complete": beta(g.video_complete),
            "breadth": breadth,
            # Most are active for the whole period; some arrive late or leave early (an engagement trend).
            "from": int(rng.integers(0, 20)) if rng.random() < 0.8 else int(rng.integers(20, 80)),
            "to": HISTORY_DAYS if rng.random() < 0.85 else int(rng.integers(60, HISTORY_DAYS)),
        }
        if habits["from"] >= habits["to"]:
            habits["from"] = max(0, habits["to"] - 30)
        return p, habits

    def _local_start(self, p: Person, day: dt.date, hour: float) -> dt.datetime:
        local = dt.datetime.combine(day, dt.time(), ZoneInfo(p.tz)) + dt.timedelta(hours=hour % 24)
        return local.astimezone(UTC)

    def _session(self, p: Person, habits: dict, start: dt.datetime, order: dict | None = None) -> None:
        rng = self.rng
        if p.group == "video_watcher" and "tablet" in p.devices and rng.random() < 0.5:
            dev = p.devices["tablet"]
        else:
            dev = (
                p.devices["mobile"]
                if rng.random() < habits["mobile"]
                else p.devices.get("desktop") or p.devices.get("tablet")
            )
        t = start
        p.counts["sessions"] += 1
        ref = str(
            rng.choice(["", "https://www.google.com/", "https://news.example.org/today", "https://www.instagram.com/"])
        )

        def step() -> dt.datetime:
            nonlocal t
            t += dt.timedelta(seconds=3 + float(rng.exponential(40)))
            return t

        def category() -> str:
            return str(rng.choice(CATEGORIES) if rng.random() < habits["breadth"] else rng.choice(p.categories))

        def product(cat: str) -> dict:
            sku = f"{cat[:2].upper()}{int(rng.integers(100, 999))}"
            return {"product_id": sku, "category": cat, "price": round(float(rng.lognormal(3.5, 0.5)), 2)}

        def page(path: str, title: str) -> None:
            url = f"https://store.planted.example{path}"
            self._emit(
                p,
                dev,
                step(),
                "page",
                title,
                {"path": path, "url": url, "title": title},
                page={"path": path, "url": url, "title": title, "referrer": ref or None},
            )
            p.counts["page_views"] += 1

        landing = "/" if p.group != "night_mobile_reader" else f"/journal/{rng.choice(ARTICLES)}"
        page(landing, "Journal" if landing != "/" else "Home")
        if not p.identified:
            self._emit(p, dev, step(), "identify", traits={"email": p.email})
            p.identified = True
        n = 0 if order else int(rng.poisson(max(habits["events"] - 1, 0.2)))
        for action in rng.choice(ACTIONS, size=n, p=habits["mix"]):
            if action == "page":
                art = str(rng.choice(ARTICLES))
                page(f"/journal/{art}", art.replace("-", " ").title())
            elif action == "view":
                self._emit(p, dev, step(), "track", "Product Viewed", product(category()))
                p.counts["product_views"] += 1
            elif action == "search":
                self._emit(
                    p,
                    dev,
                    step(),
                    "track",
                    "Products Searched",
                    {"query": f"{category()} {rng.choice(['gift', 'cheap', 'best', 'set', ''])}".strip()},
                )
                p.counts["searches"] += 1
            elif action == "add":
                self._emit(p, dev, step(), "track", "Product Added", {**product(category()), "quantity": 1})
                p.counts["add_to_cart"] += 1
            elif action == "video":
                vid = f"vid-{rng.choice(ARTICLES)}"
                self._emit(p, dev, step(), "track", "Video Playback Started", {"video_id": vid})  # unmapped: 'other'
                done = rng.random() < habits["video_complete"]
                pct = int(rng.choice([80, 90, 100])) if done else int(rng.choice([5, 20, 40, 60]))
                self._emit(p, dev, step(), "track", "Video Watched", {"video_id": vid, "percent_watched": pct})
                p.counts["videos"] += 1
                p.counts["videos_completed"] += done
            else:
                deep = rng.random() < habits["deep_scroll"]
                self._emit(
                    p,
                    dev,
                    step(),
                    "track",
                    "Scroll Depth Reached",
                    {"percent": int(rng.choice([75, 90, 100])) if deep else int(rng.choice([10, 25, 50]))},
                )
                p.counts["scrolls"] += 1
                p.counts["deep_scrolls"] += deep
        if order is not None:
            for line in order["lines"]:
                self._emit(p, dev, step(), "track", "Product Viewed", line["product"])
                self._emit(p, dev, step(), "track", "Product Added", {**line["product"], "quantity": line["qty"]})
                p.counts["product_views"] += 1
                p.counts["add_to_cart"] += 1
            page("/checkout", "Checkout")
            at = step()
            order["at"] = at
            self._emit(
                p,
                dev,
                at,
                "track",
                "Order Completed",
                {
                    "order_id": order["order_id"],
                    "revenue": order["total"],
                    "currency": "EUR",
                    "products": [{**ln["product"], "quantity": ln["qty"]} for ln in order["lines"]],
                },
            )

    def _order(self, p: Person, habits: dict, day: dt.date) -> None:
        rng = self.rng
        lines = [
            {
                "product": {
                    "product_id": f"{c[:2].upper()}{int(rng.integers(100, 999))}",
                    "category": c,
                    "price": round(float(rng.lognormal(3.6, 0.5)), 2),
                },
                "qty": int(rng.choice([1, 1, 1, 2])),
            }
            for c in (rng.choice(p.categories) for _ in range(int(rng.choice([1, 1, 2, 3]))))
        ]
        total = round(sum(ln["product"]["price"] * ln["qty"] for ln in lines), 2)
        self.orders += 1
        order = {"order_id": f"PB{self.orders:06d}-{int(rng.integers(10, 99))}", "lines": lines, "total": total}
        status = str(rng.choice(["completed", "refunded", "cancelled"], p=[0.95, 0.03, 0.02]))
        start = min(
            self._local_start(p, day, habits["hour"] + rng.normal(0, GROUPS[p.group].hour_sd)),
            LAST_START - dt.timedelta(hours=1),
        )
        store = rng.random() < 0.1
        if store:  # bought in a shop: the orders export knows it, no event does
            order["at"] = start
        else:
            self._session(p, habits, start, order)
        for ln in lines:
            self.order_rows.append(
                [
                    order["at"].strftime("%Y-%m-%d %H:%M:%S+00:00"),
                    order["order_id"],
                    status,
                    f"{ln['product']['price'] * ln['qty']:.2f}",
                    "EUR",
                    p.customer_id,
                    p.email,
                    "store" if store else "web",
                ]
            )
        if status == "completed":
            p.counts["orders"] += 1
            p.counts["spend"] += total

    def simulate(self, p: Person, habits: dict) -> None:
        rng, g = self.rng, GROUPS[p.group]
        days = [self.start + dt.timedelta(days=d) for d in range(habits["from"], habits["to"])]
        if p.group == "one_off_visitor":
            day = days[int(rng.integers(0, len(days)))]
            visits = [day] + (
                [min(day + dt.timedelta(days=int(rng.integers(0, 3))), AS_OF)] if rng.random() < 0.15 else []
            )
            for d in visits:
                self._session(
                    p, habits, min(self._local_start(p, d, habits["hour"] + rng.normal(0, g.hour_sd)), LAST_START)
                )
            if rng.random() < ONE_OFF_BUYS:
                self._order(p, habits, day)
        else:
            for day in days:
                rate = habits["sessions_per_day"] * (g.weekend if day.isoweekday() >= 6 else 1.0)
                for _ in range(int(rng.poisson(rate))):
                    start = self._local_start(p, day, habits["hour"] + rng.normal(0, g.hour_sd))
                    if start < LAST_START:  # else it would fall on the day after AS_OF in UTC
                        self._session(p, habits, start)
                for _ in range(int(rng.poisson(habits["orders_per_day"]))):
                    self._order(p, habits, day)
        if p.counts["sessions"] == 0:  # everyone visits at least once
            day = days[int(rng.integers(0, len(days)))]
            self._session(p, habits, min(self._local_start(p, day, habits["hour"]), LAST_START))
        signup = self.start - dt.timedelta(days=int(rng.integers(5, 400)), seconds=int(rng.integers(0, 86400)))
        self.crm_rows.append(
            [
                p.customer_id,
                p.email,
                p.country,
                signup.strftime("%Y-%m-%dT%H:%M:%SZ"),
                str(rng.choice(["true", "false"])),
                "true",
            ]
        )


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def generate_planted(landing: Path, persons: int, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """Write the landing zone; return one row per person (user_id, group, the 16 reference features)
    and the counts written."""
    for folder in ("events", "orders", "crm"):
        (landing / folder).mkdir(parents=True, exist_ok=True)
    w = PlantedWriter(landing, seed)
    names = list(GROUPS)
    sizes = [int(GROUPS[n].share * persons) for n in names]
    sizes[0] += persons - sum(sizes)
    groups = w.rng.permutation(np.repeat(np.arange(len(names)), sizes))
    rows = []
    for i, gi in enumerate(groups):
        p, habits = w.person(i, names[gi])
        w.simulate(p, habits)
        c = p.counts
        ev = max(c["events"], 1.0)
        rows.append(
            {
                "user_id": p.user_id,
                "group": p.group,
                **{k: c[k] for k in COUNT_FEATURES},
                "night_share": c["night"] / ev,
                "mobile_share": c["mobile"] / ev,
                "weekend_share": c["weekend"] / ev,
                "business_hours_share": c["business_hours"] / ev,
                "video_completion_share": c["videos_completed"] / c["videos"] if c["videos"] else 0.0,
                "deep_scroll_share": c["deep_scrolls"] / c["scrolls"] if c["scrolls"] else 0.0,
            }
        )
    w.close()
    return pd.DataFrame(rows), {
        "messages": w.messages,
        "order_lines": len(w.order_rows),
        "crm_rows": len(w.crm_rows),
        "event_files": len(w.handles),
    }


def kmeans6(X: pd.DataFrame, groups: pd.Series, scaler) -> float:
    z = scaler.fit_transform(X.astype("float64").fillna(0.0))
    labels = KMeans(n_clusters=len(GROUPS), n_init=10, random_state=SEED % 2**31).fit_predict(z)
    return round(float(adjusted_rand_score(groups, labels)), 4)


def eta_squared(values: pd.Series, groups: pd.Series) -> float:
    """Share of a feature's variance the planted groups explain."""
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    between = float(values.groupby(groups).agg(lambda s: len(s) * (s.mean() - values.mean()) ** 2).sum())
    return between / total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench" / "planted_behaviour")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="analyse the work folder's last run again, without "
        "generating or running the pipeline (its times are then left out)",
    )
    args = ap.parse_args()
    work = args.workdir.resolve()
    landing, warehouse, store = work / "landing", work / "warehouse.duckdb", work / "mlflow.db"
    started = time.perf_counter()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    if args.reuse:
        truth = pd.read_csv(work / "truth" / "persons.csv")
        written, generate_s, pipeline = json.loads((work / "truth" / "written.json").read_text()), None, None
    else:
        if landing.exists():
            import shutil

            shutil.rmtree(landing)
        warehouse.unlink(missing_ok=True)
        store.unlink(missing_ok=True)
        truth, written = generate_planted(landing, args.persons, args.seed)
        (work / "truth").mkdir(parents=True, exist_ok=True)
        truth.to_csv(work / "truth" / "persons.csv", index=False)
        (work / "truth" / "written.json").write_text(json.dumps(written))
        generate_s = round(time.perf_counter() - started, 1)
        pipeline = run_pipeline(landing, warehouse, with_ml=True)

    group_of = truth.set_index("user_id")["group"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ids = con.execute(
            "SELECT identifier AS user_id, person_id FROM marts.identity_map WHERE identifier_type = 'user_id'"
        ).df()
        clusters = con.execute("SELECT person_id, cluster_id, cluster_name FROM marts.cluster_assignments").df()
        ready = con.execute("""SELECT f.* FROM marts.user_features_model_ready f
                               JOIN intermediate.int_feature_dates d ON d.as_of = f.as_of AND d.purpose = 'scoring'
                               ORDER BY f.person_id""").df()
        raw_features = con.execute("""SELECT f.person_id, f.preferred_local_hour, f.preferred_daypart,
                                             f.primary_device_type FROM marts.user_features f
                                      JOIN intermediate.int_feature_dates d ON d.as_of = f.as_of AND d.purpose = 'scoring'
                                   """).df()
        quarantine = con.execute(
            "SELECT source, reason_code, count(*) AS n FROM raw.quarantine GROUP BY ALL ORDER BY n DESC"
        ).df()
        field_issues = con.execute(
            "SELECT source, reason_code, count(*) AS n FROM raw.field_issues GROUP BY ALL ORDER BY n DESC"
        ).df()
        as_of = con.execute("SELECT as_of FROM intermediate.int_feature_dates WHERE purpose = 'scoring'").fetchone()[0]
    ids["group"] = ids["user_id"].map(group_of)
    person_group = ids.groupby("person_id")["group"].agg(lambda s: s.value_counts().index[0])
    identity = {
        "user_ids": int(len(ids)),
        "persons": int(ids["person_id"].nunique()),
        "persons_with_several_user_ids": int((ids.groupby("person_id").size() > 1).sum()),
        "persons_in_features": int(len(ready)),
    }

    # The pipeline's clusters.
    clusters["group"] = clusters["person_id"].map(person_group)
    c = clusters.dropna(subset=["group"])
    crosstab = pd.crosstab(
        c["cluster_name"] + " [" + c["cluster_id"].astype(str) + "]",
        c["group"],
        rownames=["cluster"],
        colnames=["planted group"],
    )
    pipeline_ari = round(float(adjusted_rand_score(c["group"], c["cluster_id"])), 4) if len(c) else None

    # Reference 1: KMeans k=6 on the 16 features computed from the generated data itself.
    ref = truth.copy()
    ref_logged = ref[REFERENCE_FEATURES].copy()
    ref_logged[COUNT_FEATURES] = np.log1p(ref_logged[COUNT_FEATURES])
    ari_ref = kmeans6(ref_logged, ref["group"], StandardScaler())
    ari_ref_raw = kmeans6(ref[REFERENCE_FEATURES], ref["group"], StandardScaler())

    # Reference 2: KMeans k=6 on the pipeline's model-ready features (numeric, no btyd_*).
    from ml.clustering import ClusteringConfig, train_clustering
    from ml.features import clustering_columns, numeric_columns, numeric_matrix

    ready["group"] = ready["person_id"].map(person_group)
    r = ready.dropna(subset=["group"]).reset_index(drop=True)
    cols = numeric_columns(r.drop(columns=["group"]))
    Xr = numeric_matrix(r, cols)
    ari_ready = kmeans6(Xr, r["group"], StandardScaler())
    ari_ready_yj = kmeans6(Xr, r["group"], PowerTransformer(method="yeo-johnson"))
    # ...the columns clustering reads (ml.features.clustering_columns: each behaviour counted once).
    once = clustering_columns(r.drop(columns=["group"]))
    ari_ready_once = kmeans6(Xr[once], r["group"], StandardScaler())
    ari_ready_once_yj = kmeans6(Xr[once], r["group"], PowerTransformer(method="yeo-johnson"))
    # ...plus what the model-ready table has no column for (LOST_FEATURES), from this generator's counts.
    user_of = ids.groupby("person_id")["user_id"].first()
    lost = truth.set_index("user_id")[LOST_FEATURES].reindex(r["person_id"].map(user_of)).reset_index(drop=True)
    lost[LOST_FEATURES] = np.log1p(lost[LOST_FEATURES])
    ari_ready_plus = kmeans6(pd.concat([Xr[once], lost], axis=1), r["group"], StandardScaler())

    # Every candidate of the selection, refitted with the pipeline's settings on the same frame; and
    # the rule's pick in the other space (Yeo-Johnson or scaling alone), to compare the two.
    refit = train_clustering(r.drop(columns=["group"]), ClusteringConfig())
    other_space = ClusteringConfig(unskew=not ClusteringConfig().unskew)
    other = train_clustering(r.drop(columns=["group"]), other_space)
    other_ari = round(float(adjusted_rand_score(r["group"].to_numpy()[other.sample_index], other.chosen.labels)), 4)
    sample_groups = r["group"].to_numpy()[refit.sample_index]
    candidates = []
    for cand in refit.candidates:
        row = cand.as_row()
        keep = cand.labels != -1
        row["ari_vs_planted"] = round(float(adjusted_rand_score(sample_groups[keep], cand.labels[keep])), 4)
        candidates.append(
            {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in row.items()
                if k
                in (
                    "candidate",
                    "k",
                    "silhouette",
                    "smallest_cluster_share",
                    "noise_share",
                    "eligible",
                    "why_not",
                    "ari_vs_planted",
                )
            }
        )
    best = max((x for x in candidates if x["eligible"]), key=lambda x: x["ari_vs_planted"])

    # Features: spread and how much of it the planted groups explain.
    features = {
        col: {"std": round(float(Xr[col].std()), 4), "eta2_groups": round(eta_squared(Xr[col], r["group"]), 4)}
        for col in cols
    }
    raw_features["group"] = raw_features["person_id"].map(person_group)

    result = {
        "persons": args.persons,
        "seed": args.seed,
        "as_of": str(as_of),
        "generate_s": generate_s,
        "written": written,
        "planted_groups": truth["group"].value_counts().to_dict(),
        "identity": identity,
        "pipeline": pipeline,
        "total_s": round(time.perf_counter() - started, 1),
        "clustering": {
            "persons_scored": int(len(c)),
            "clusters": int(c["cluster_id"].nunique()),
            "chosen": refit.chosen.name,
            "ari_vs_planted": pipeline_ari,
            "crosstab": crosstab.to_dict(orient="index"),
        },
        "references": {
            "kmeans6_own_16_features_log1p": ari_ref,
            "kmeans6_own_16_features_raw": ari_ref_raw,
            "kmeans6_model_ready_scaled": ari_ready,
            "kmeans6_model_ready_yeo_johnson": ari_ready_yj,
            "kmeans6_model_ready_plus_lost_features": ari_ready_plus,
            "lost_features": LOST_FEATURES,
            "kmeans6_clustering_columns": ari_ready_once,
            "kmeans6_clustering_columns_yeo_johnson": ari_ready_once_yj,
            "clustering_columns": once,
            "model_ready_columns": cols,
        },
        "candidates": {"refit_chosen": refit.chosen.name, "best_eligible_vs_planted": best, "all": candidates},
        "other_space": {"unskew": other_space.unskew, "chosen": other.chosen.name, "ari_vs_planted": other_ari},
        "features": features,
        "features_constant": [k for k, v in features.items() if v["std"] == 0],
        "features_not_explained_by_groups": [k for k, v in features.items() if v["eta2_groups"] < 0.02],
        "preferred_daypart_by_group": pd.crosstab(raw_features["group"], raw_features["preferred_daypart"]).to_dict(
            orient="index"
        ),
        "primary_device_by_group": pd.crosstab(raw_features["group"], raw_features["primary_device_type"]).to_dict(
            orient="index"
        ),
        "quarantine": quarantine.to_dict(orient="records"),
        "field_issues": field_issues.to_dict(orient="records"),
    }
    save_result("planted_behaviour", result)

    print(
        f"\npersons {args.persons}, as_of {as_of}, messages {written['messages']:,}, "
        f"pipeline {pipeline['run_wall_s'] if pipeline else '(reused)'} s, total {result['total_s']} s"
    )
    print(f"{'what':<52}{'clusters':>9}{'ARI':>8}")
    print(f"{'pipeline champion (' + refit.chosen.name + ')':<52}{c['cluster_id'].nunique():>9}{pipeline_ari:>8}")
    print(f"{'KMeans k=6, own 16 features (log1p counts)':<52}{6:>9}{ari_ref:>8}")
    print(f"{'KMeans k=6, own 16 features (raw)':<52}{6:>9}{ari_ref_raw:>8}")
    print(f"{'KMeans k=6, model-ready features (scaled)':<52}{6:>9}{ari_ready:>8}")
    print(f"{'KMeans k=6, model-ready features (Yeo-Johnson)':<52}{6:>9}{ari_ready_yj:>8}")
    print(f"{'KMeans k=6, clustering columns (scaled)':<52}{6:>9}{ari_ready_once:>8}")
    print(f"{'KMeans k=6, clustering columns (Yeo-Johnson)':<52}{6:>9}{ari_ready_once_yj:>8}")
    print(f"{'KMeans k=6, clustering columns + video/scroll counts':<52}{6:>9}{ari_ready_plus:>8}")
    space = "Yeo-Johnson" if other_space.unskew else "scaled"
    print(
        f"{'the rule in the other space (' + space + ', ' + other.chosen.name + ')':<52}{other.chosen.k:>9}{other_ari:>8}"
    )
    print(f"{'best eligible candidate (' + best['candidate'] + ')':<52}{best['k']:>9}{best['ari_vs_planted']:>8}")
    print("\n" + crosstab.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
