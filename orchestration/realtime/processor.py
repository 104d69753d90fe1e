"""The stream processor (`tessera stream`): live state and real-time segment membership.

It reads the collector's stream in the consumer group `processor` and, for each batch of messages:
- skips those the collector quarantined, those seen before (by messageId) and those of erased
  persons (the erasure suppression list, as the batch run applies it);
- resolves each message to a person: the live links first, then the batch identity map; a message
  with both a userId and an anonymousId (an identify, an alias) links them at once, and the
  anonymous person's live state joins the user's;
- updates each person's live state: events per minute (the sliding windows), last seen, last
  product viewed, last add-to-cart, cart value, last order;
- evaluates the segments with `refresh: realtime` for the persons touched, and for those whose
  timer fell due ("added to cart and no order within 24 hours" enters when the hours pass), over
  the batch attributes of marts.segment_attributes with the live values on top, in the segment
  rule language, behind the same consent test as the daily run;
- writes the state, the membership, the entries and exits (the stream `tessera:segment_changes`)
  and the acknowledgement of the batch in one Redis transaction.

That transaction makes a batch count once: killed before it, the processor gets the same messages
again on restart (they stay pending in the group) and nothing of them was applied; killed after it,
they are acknowledged and their effects are whole. One processor consumes the group at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd
import redis

from orchestration.defs.segments.catalog import LIVE_COLUMNS, Catalog, Segment
from orchestration.lib.consent import personalisation_allowed_sql
from orchestration.realtime import broker, erasure

log = logging.getLogger("tessera.stream")

K = broker.PREFIX
IDS = broker.IDS
_key = broker.key
TIMERS = f"{K}timers"  # sorted set person -> when a real-time rule may change by the clock alone (epoch s)
SEEN_TTL_S = 7 * 86400  # a messageId counts once within a week
WINDOWS_S = {"rt_events_1h": 3600, "rt_events_24h": 86400}
KEEP_MINUTES = max(WINDOWS_S.values()) // 60
_HOURS_SINCE = re.compile(r"hours_since\(\s*(\w+)\s*\)\s*(>=|>|=)\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
LIVE_TIMES = ("last_seen_at", "last_add_to_cart_at", "last_order_at")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class Reference:
    """What the processor takes from the last batch run: identities, attributes, erased identifiers."""

    identities: dict[tuple[str, str], str]
    attributes: duckdb.DuckDBPyConnection  # in memory: table attrs (marts.segment_attributes)
    suppressed: set[tuple[str, str]]  # (identifier type, sha256)
    ids_of: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)  # person -> identities

    def __post_init__(self) -> None:
        for (kind, value), person in self.identities.items():
            self.ids_of.setdefault(person, []).append((kind, value))

    @classmethod
    def load(cls, warehouse: Path) -> Reference:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)")
        tables = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'w'"
            ).fetchall()
        }
        if "marts.segment_attributes" not in tables:
            raise FileNotFoundError(
                f"{warehouse} has no marts.segment_attributes: run the batch pipeline once (`make run`) before the stream."
            )
        con.execute("CREATE TABLE attrs AS SELECT * FROM w.marts.segment_attributes")
        identities = {
            (t, i): p
            for t, i, p in con.execute(
                "SELECT identifier_type, identifier, person_id FROM w.marts.identity_map "
                "WHERE identifier_type IN ('user_id', 'anonymous_id')"
            ).fetchall()
        }
        suppressed = set()
        if "privacy.suppression_list" in tables:
            suppressed = {
                (t, h)
                for t, h in con.execute(
                    "SELECT identifier_type, identifier_sha256 FROM w.privacy.suppression_list"
                ).fetchall()
            }
        con.execute("DETACH w")
        return cls(identities, con, suppressed)


class _Reload:
    """Loads the warehouse again, in a thread, when a daily run has changed it (checked every 30 s)."""

    def __init__(self, warehouse: Path | None, every_s: float = 30.0):
        self.warehouse, self.every_s = warehouse, every_s
        self.mtime = warehouse.stat().st_mtime if warehouse else None
        self.checked = time.monotonic()
        self.thread: threading.Thread | None = None
        self.loaded: Reference | None = None

    def ready(self) -> Reference | None:
        if self.loaded is not None:
            fresh, self.loaded = self.loaded, None
            return fresh
        if self.warehouse is None or self.thread or time.monotonic() - self.checked < self.every_s:
            return None
        self.checked = time.monotonic()
        mtime = self.warehouse.stat().st_mtime
        if mtime != self.mtime:
            self.thread = threading.Thread(target=self._load, args=(mtime,), daemon=True)
            self.thread.start()
        return None

    def _load(self, mtime: float) -> None:
        try:
            self.loaded, self.mtime = Reference.load(self.warehouse), mtime
            log.info("Reloaded the daily run's identities, attributes and suppression list from %s", self.warehouse)
        except (duckdb.Error, OSError) as exc:  # a run holds the file: try again at the next check
            log.warning("Could not reload %s yet: %s", self.warehouse, exc)
        finally:
            self.thread = None


@dataclasses.dataclass
class Message:
    stream_id: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    occurred_at: dt.datetime
    product_id: str | None
    revenue: float | None
    line: str

    @classmethod
    def of(cls, stream_id: str, fields: dict[str, str]) -> Message:
        return cls(
            stream_id,
            fields["message_id"],
            fields["type"],
            fields.get("event"),
            fields.get("user_id"),
            fields.get("anonymous_id"),
            dt.datetime.fromisoformat(fields["occurred_at"]),
            fields.get("product_id"),
            float(fields["revenue"]) if "revenue" in fields else None,
            fields["line"],
        )


@dataclasses.dataclass
class Stats:
    processed: int = 0
    quarantined: int = 0
    duplicates: int = 0
    suppressed: int = 0
    changes: int = 0
    batches: int = 0


def _epoch(value: dt.datetime) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp()


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


class Processor:
    def __init__(
        self,
        client: redis.Redis,
        reference: Reference,
        catalog: Catalog,
        taxonomy: dict[str, list[str]],
        consent_default_allowed: bool = True,
        consumer: str = "processor",
        clock=time.time,
        warehouse: Path | None = None,
    ):
        self.client, self.reference, self.clock = client, reference, clock
        self.warehouse, self._reload = warehouse, _Reload(warehouse)
        self.consumer = consumer
        self.segments: list[Segment] = [s for s in catalog.segments.values() if s.spec.refresh == "realtime"]
        self.viewed = set(taxonomy.get("tessera__event_product_viewed", []))
        self.added = set(taxonomy.get("tessera__event_product_added", []))
        self.ordered = set(taxonomy.get("tessera__event_order_completed", []))
        self.consent = personalisation_allowed_sql(consent_default_allowed)
        self.timers = {
            s.name: [(col, float(n) + (1 if op == ">" else 0)) for col, op, n in _HOURS_SINCE.findall(s.spec.rule)]
            for s in self.segments
        }
        self.stats = Stats()
        self._pending = True  # after a restart, the messages delivered before it come first
        self._open_day: dt.date | None = None
        self._erased_cache, self._erased_hashes = erasure.ErasedCache(), set()
        broker.ensure_groups(client)
        self._apply_erasures()
        with client.pipeline(transaction=True) as tx:  # what the lookup API overlays
            tx.delete(broker.SEGMENTS)
            if self.segments:
                tx.hset(broker.SEGMENTS, mapping={s.name: s.spec.type for s in self.segments})
            tx.execute()

    # -- reading -------------------------------------------------------------------------------

    def step(self, count: int = 2000, block_ms: int = 100) -> int:
        """Process one batch (and the timers due); returns the number of stream entries handled."""
        entries, self._pending = broker.read_group(
            self.client, broker.PROCESSOR, self.consumer, self._pending, count, block_ms
        )
        if (fresh := self._reload.ready()) is not None:
            self.reference = fresh
            self._apply_erasures()
        now = self.clock()
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        if self._open_day is None:  # the day a processor before this one was working in, if any
            stored = self.client.get(broker.OPEN_DAY)
            self._open_day = dt.date.fromisoformat(stored) if stored else None
        if self._open_day is not None and self._open_day < today:  # the processor ran through midnight
            self.close_day(self._open_day)
        if self._open_day is None or self._open_day < today:
            self.client.set(broker.OPEN_DAY, today.isoformat())
            self._open_day = today
        due = [p for p in self.client.zrangebyscore(TIMERS, "-inf", now, start=0, num=1000)]
        if not entries and not due:
            return 0
        self._apply(entries, due, now)
        return len(entries)

    def run(self, stop=None, idle_exit_s: float | None = None) -> Stats:
        """Process until `stop` is set (or, with `idle_exit_s`, until the stream has been quiet that long)."""
        quiet_since = time.monotonic()
        while not (stop and stop.is_set()):
            if self.step():
                quiet_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - quiet_since > idle_exit_s:
                break
        return self.stats

    def _apply_erasures(self) -> None:
        """What the daily run erased since this Redis last heard of it (it was down during the run,
        say) goes now: the erasure asset does it at once when Redis answers; this is the backstop."""
        found = erasure.erase(self.client, {h for _, h in self.reference.suppressed})
        if found:
            log.info("Erased %d traces of erased persons in %d Redis keys", sum(found.values()), len(found))

    # -- one batch -----------------------------------------------------------------------------

    def _apply(self, entries: list[tuple[str, dict]], due: list[str], now: float) -> None:
        """Apply a batch in one transaction, done again if an erasure came in meanwhile (the
        transaction WATCHes the erased set, so nothing of a newly erased person is written)."""
        while True:
            with self.client.pipeline(transaction=True) as tx:
                tx.watch(erasure.ERASED)
                self._erased_hashes = self._erased_cache.refresh(tx)
                try:
                    return self._apply_watched(tx, entries, due, now)
                except redis.WatchError:
                    log.info("An erasure came in during a batch: applying the batch again without the erased")

    def _apply_watched(self, tx, entries: list[tuple[str, dict]], due: list[str], now: float) -> None:
        counts = Stats(batches=1)
        due = [p for p in due if sha256(p) not in self._erased_hashes]  # a timer the erasure has not reached yet
        messages = [Message.of(sid, fields) for sid, fields in entries if "reason_code" not in fields]
        counts.quarantined = len(entries) - len(messages)
        fresh = self._first_copies(messages)
        counts.duplicates = len(messages) - len(fresh)
        messages = [m for m in fresh if not self._erased(m)]
        counts.suppressed = len(fresh) - len(messages)
        counts.processed = len(messages)

        resolved, links, merges = self._resolve(messages)
        persons = set(resolved.values()) | set(due) | set(merges.values()) | set(merges)
        state = self._load_state(persons)
        for src in merges:  # an absorbed person may have absorbed another before: follow to the end
            dst = merges[src]
            while dst in merges:
                dst = merges[dst]
            _merge(state[dst], state.pop(src))
        for m in messages:
            self._update(state[resolved[m.message_id]], m)
        evaluated = {p: s for p, s in state.items() if p not in merges}
        members = self._load_members(evaluated)
        new_members = self._evaluate(evaluated, now)

        tx.multi()
        if messages:
            tx.sadd(_seen_key(now), *[m.message_id for m in messages])
            tx.expire(_seen_key(now), SEEN_TTL_S + 86400)
        if links:
            tx.hset(IDS, mapping=links)
            for key, person in links.items():
                tx.sadd(_key("links", person), key)
        for src in merges:
            tx.delete(_key("state", src), _key("members", src), _key("links", src))
            tx.zrem(TIMERS, src)
        if due:
            tx.zrem(TIMERS, *due)
        writes, wakes = {}, {}
        for person, s in evaluated.items():
            writes[_key("state", person)] = _stored(s)
            counts.changes += self._write_membership(
                tx, writes, person, members.get(person, {}), new_members.get(person, set()), now
            )
            if (wake := self._next_timer(person, s, now)) is not None:
                wakes[person] = wake  # a later timer left from before only wakes them for nothing
        if writes:
            tx.mset(writes)
        if wakes:
            tx.zadd(TIMERS, wakes)
        if entries:
            tx.xack(broker.EVENTS, broker.PROCESSOR, *[sid for sid, _ in entries])
        for name, value in dataclasses.asdict(counts).items():  # for Dagster's observation
            tx.hincrby(broker.STATS, name, value)
        tx.execute()
        for name, value in dataclasses.asdict(counts).items():
            setattr(self.stats, name, getattr(self.stats, name) + value)

    def _first_copies(self, messages: list[Message]) -> list[Message]:
        """A messageId counts once: copies within the batch and messages processed before are skipped."""
        unique = list({m.message_id: m for m in reversed(messages)}.values())[::-1]
        if not unique:
            return []
        ids = [m.message_id for m in unique]
        with self.client.pipeline(transaction=False) as pipe:
            for days_ago in range(SEEN_TTL_S // 86400 + 1):
                pipe.smismember(_seen_key(self.clock() - days_ago * 86400), ids)
            seen = [any(flags) for flags in zip(*pipe.execute(), strict=True)]
        return [m for m, s in zip(unique, seen, strict=True) if not s]

    def _erased(self, m: Message) -> bool:
        """An identifier of the message is on the batch run's suppression list, or was erased since."""
        ids = [("user_id", m.user_id), ("anonymous_id", m.anonymous_id)]
        return any(
            (t, h) in self.reference.suppressed or h in self._erased_hashes for t, v in ids if v and (h := sha256(v))
        )

    def _resolve(self, messages: list[Message]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """(messageId -> person, links to write, merges: absorbed person -> the person it joined)."""
        wanted = sorted({f"{t}:{v}" for m in messages for t, v in _ids(m)})
        live = dict(zip(wanted, self.client.hmget(IDS, wanted), strict=True)) if wanted else {}
        links: dict[str, str] = {}
        merges: dict[str, str] = {}

        def final(person: str | None) -> str | None:
            while person in merges:
                person = merges[person]
            return person

        def person_of(kind: str, value: str | None) -> str | None:
            key = f"{kind}:{value}"
            return final(links.get(key) or live.get(key) or self.reference.identities.get((kind, value)))

        resolved = {}
        for m in messages:
            ids = _ids(m)
            by_user = person_of("user_id", m.user_id) if m.user_id else None
            by_anonymous = person_of("anonymous_id", m.anonymous_id) if m.anonymous_id else None
            person = by_user or by_anonymous or "live_" + sha256(f"{ids[0][0]}:{ids[0][1]}")[:16]
            if by_anonymous and by_anonymous != person:
                merges[by_anonymous] = person
            for kind, value in ids:
                links[f"{kind}:{value}"] = person
            resolved[m.message_id] = person
        if merges:  # every identifier of an absorbed person now leads to the person it joined
            absorbed = sorted(merges)
            with self.client.pipeline(transaction=False) as pipe:
                for person in absorbed:
                    pipe.smembers(_key("links", person))
                known = pipe.execute()
            for person, keys in zip(absorbed, known, strict=True):
                batch_keys = {f"{t}:{v}" for t, v in self.reference.ids_of.get(person, ())}
                for key in keys | batch_keys:
                    links[key] = final(person)
        resolved = {mid: final(p) for mid, p in resolved.items()}
        links = {
            key: final(p)
            for key, p in links.items()
            if live.get(key) != final(p) and self.reference.identities.get(tuple(key.split(":", 1))) != final(p)
        }
        return resolved, links, merges

    def _load_state(self, persons: Iterable[str]) -> dict[str, dict]:
        """Each person's live state (one JSON value per person: a batch reads them in one MGET)."""
        persons = sorted(persons)
        replies = self.client.mget([_key("state", p) for p in persons]) if persons else []
        state = {}
        for p, stored in zip(persons, replies, strict=True):
            s = {**EMPTY_STATE, **json.loads(stored)} if stored else {**EMPTY_STATE}
            s["minutes"] = {int(k): v for k, v in s["minutes"].items()}
            state[p] = s
        return state

    def _update(self, s: dict, m: Message) -> None:
        at = m.occurred_at.isoformat()
        s["events_total"] += 1
        s["last_seen_at"] = max(filter(None, (s["last_seen_at"], at)))
        minute = int(_epoch(m.occurred_at) // 60)
        s["minutes"][minute] = s["minutes"].get(minute, 0) + 1
        newest = max(s["minutes"])
        s["minutes"] = {k: v for k, v in s["minutes"].items() if k > newest - KEEP_MINUTES}
        if m.type != "track":
            return
        if m.event in self.viewed and m.product_id and at >= (s["last_product_viewed_at"] or ""):
            s["last_product_viewed"], s["last_product_viewed_at"] = m.product_id, at
        elif m.event in self.added:
            s["last_add_to_cart_at"] = max(filter(None, (s["last_add_to_cart_at"], at)))
            s["cart_value"] = round(s["cart_value"] + _line_value(m), 2)
        elif m.event in self.ordered:
            s["last_order_at"] = max(filter(None, (s["last_order_at"], at)))
            s["cart_value"] = 0.0

    # -- membership ----------------------------------------------------------------------------

    def _load_members(self, persons: dict[str, dict]) -> dict[str, dict[str, str]]:
        names = sorted(persons)
        replies = self.client.mget([_key("members", p) for p in names]) if names else []
        return {p: json.loads(r) if r else {} for p, r in zip(names, replies, strict=True)}

    def frame(self, state: dict[str, dict], now: float) -> pd.DataFrame:
        """The live columns of `state`'s persons, one row each."""
        rows = []
        for person, s in state.items():
            row = {"person_id": person, **{c: _time(s[c]) for c in LIVE_TIMES}}
            for column, seconds in WINDOWS_S.items():
                since = (now - seconds) // 60
                row[column] = sum(n for minute, n in s["minutes"].items() if minute > since)
            row["rt_cart_value"] = s["cart_value"]
            row["rt_last_product_viewed"] = s["last_product_viewed"]
            rows.append(row)
        columns = ["person_id", *LIVE_TIMES, *LIVE_COLUMNS]
        return pd.DataFrame(rows, columns=columns).astype({c: "datetime64[us]" for c in LIVE_TIMES})

    def _evaluate(
        self, state: dict[str, dict], now: float, everyone: bool = False, as_of: dt.date | None = None
    ) -> dict[str, set[str]]:
        """The real-time segments each person of `state` is in at `now` (the day of `as_of`, by default
        now's), consent applied; with `everyone`, also each person of the daily attributes the stream
        has not seen."""
        if not (state or everyone) or not self.segments:
            return {}
        con = self.reference.attributes
        con.register("_live", self.frame(state, now))
        con.register("_clock", _clock(now, as_of))
        join = "attrs a FULL JOIN _live l" if everyone else "_live l LEFT JOIN attrs a"
        try:
            con.execute(
                f"""
                CREATE OR REPLACE TEMP VIEW _frame AS
                SELECT a.* REPLACE (
                           coalesce(l.person_id, a.person_id) AS person_id, c.as_of AS as_of, c.evaluated_at AS evaluated_at,
                           {", ".join(f"greatest(a.{t}, l.{t}) AS {t}" for t in LIVE_TIMES)},
                           date_diff('day', CAST(greatest(a.last_seen_at, l.last_seen_at) AS DATE), CAST(c.as_of AS DATE))
                             AS recency_days,
                           date_diff('day', CAST(greatest(a.last_order_at, l.last_order_at) AS DATE), CAST(c.as_of AS DATE))
                             AS days_since_last_order),
                       {", ".join(f"coalesce(l.{t}, 0) AS {t}" if LIVE_COLUMNS[t] == "number" else f"l.{t}" for t in LIVE_COLUMNS)}
                FROM {join} ON a.person_id = l.person_id CROSS JOIN _clock c"""
            )
            out: dict[str, set[str]] = {p: set() for p in state}
            for segment in self.segments:
                sql = segment.compiled.sql
                for (person,) in con.execute(
                    f"SELECT person_id FROM _frame WHERE {self.consent} AND ({sql.text})", list(sql.params)
                ).fetchall():
                    out.setdefault(person, set()).add(segment.name)
        finally:
            con.unregister("_live")
            con.unregister("_clock")
        return out

    def close_day(self, day: dt.date) -> dict[str, int]:
        """Every person's real-time segments at the end of `day` (the moment a daily run of that
        day evaluates its segments at), over the daily attributes and all live state: kept 14 days
        in Redis for the reconciliation with the daily run. Returns the size of each segment."""
        at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).replace(tzinfo=dt.UTC).timestamp()
        while True:
            with self.client.pipeline(transaction=True) as tx:
                tx.watch(erasure.ERASED)  # as a batch does: an erasure meanwhile makes it start again
                erased = self._erased_cache.refresh(tx)
                try:
                    return self._close_day_watched(tx, day, at, erased)
                except redis.WatchError:
                    log.info("An erasure came in during the closing of %s: closing it again", day)

    def _close_day_watched(self, tx, day: dt.date, at: float, erased: set[str]) -> dict[str, int]:
        persons = [k.removeprefix(_key("state", "")) for k in self.client.scan_iter(_key("state", "*"), count=1000)]
        members = self._evaluate(self._load_state(persons), at, everyone=True, as_of=day)
        names = self._identifiers([p for p, segments in members.items() if segments])
        by_segment: dict[str, list[str]] = {s.name: [] for s in self.segments}
        for person, segments in members.items():
            # the daily attributes this processor holds may predate an erasure its reload has not brought yet
            if segments and not {sha256(person), sha256(names[person].split(":", 1)[-1])} & erased:
                for segment in segments:
                    by_segment[segment].append(names[person])
        closing = broker.closing(day)
        tx.multi()
        for name, people in by_segment.items():
            tx.delete(f"{closing}:{name}")
            if people:
                tx.sadd(f"{closing}:{name}", *people)
            tx.expire(f"{closing}:{name}", 14 * 86400)
        tx.hset(
            closing,
            mapping={name: len(people) for name, people in by_segment.items()} | {"_closed_at": time.time()},
        )
        tx.expire(closing, 14 * 86400)
        tx.execute()
        return {name: len(people) for name, people in by_segment.items()}

    def _identifiers(self, persons: list[str]) -> dict[str, str]:
        """One identifier ("<type>:<value>") for each person, by which a later daily run, whose person ids
        may differ (new links merge persons), finds them: the least of the stream's links and the daily
        run's ids; a person with neither keeps "person_id:<id>"."""
        live = [p for p in persons if p.startswith("live_")]
        with self.client.pipeline(transaction=False) as pipe:
            for p in live:
                pipe.smembers(_key("links", p))
            linked = dict(zip(live, pipe.execute(), strict=True))
        out = {}
        for p in persons:
            keys = set(linked.get(p, ())) | {f"{t}:{v}" for t, v in self.reference.ids_of.get(p, ())}
            out[p] = min(keys, default=f"person_id:{p}")
        return out

    def _write_membership(
        self, tx, writes: dict[str, str], person: str, before: dict[str, str], after: set[str], now: float
    ) -> int:
        """Entries and exits on the changes stream; the person's membership into `writes` when it changed."""
        at = dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None).isoformat()
        entered = after - set(before)
        exited = set(before) - after - {"_evaluated"}
        for name in sorted(entered):
            tx.xadd(broker.CHANGES, {"person_id": person, "segment": name, "change": "entered", "at": at})
        for name in sorted(exited):
            tx.xadd(broker.CHANGES, {"person_id": person, "segment": name, "change": "exited", "at": at})
        if entered or exited or "_evaluated" not in before:  # _evaluated: the API's sign the stream knows them
            members = {"_evaluated": before.get("_evaluated", at)} | {
                name: before.get(name, at) for name in sorted(after)
            }
            writes[_key("members", person)] = json.dumps(members, separators=(",", ":"))
        return len(entered) + len(exited)

    def _next_timer(self, person: str, s: dict, now: float) -> float | None:
        """The next moment an hours_since() clause of a real-time rule changes for this person."""
        wakes = [  # hours_since() counts hour boundaries (date_diff), so it changes on the hour
            _epoch(moment) // 3600 * 3600 + hours * 3600
            for thresholds in self.timers.values()
            for column, hours in thresholds
            if column in LIVE_TIMES and (moment := _time(s[column])) is not None
        ]
        later = [w for w in wakes if w > now]
        return min(later) if later else None


def _clock(now: float, as_of: dt.date | None) -> pd.DataFrame:
    """The evaluation's `as_of` (a day, as the daily run's scoring date) and `evaluated_at` (a moment)."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None)
    day = dt.datetime.combine(as_of or moment.date(), dt.time())
    return pd.DataFrame({"as_of": [pd.Timestamp(day)], "evaluated_at": [pd.Timestamp(moment)]})


def _seen_key(at: float) -> str:
    """The messageIds processed on a UTC day: a set per day, kept a week."""
    return f"{K}seen:{dt.datetime.fromtimestamp(at, dt.UTC).date()}"


EMPTY_STATE = {
    "last_seen_at": None,
    "last_add_to_cart_at": None,
    "last_order_at": None,
    "last_product_viewed": None,
    "last_product_viewed_at": None,
    "cart_value": 0.0,
    "events_total": 0,
    "minutes": {},  # events per minute (epoch minute -> count), the last 24 hours
}


def _stored(s: dict) -> str:
    """A person's live state as Redis keeps it: one JSON value."""
    return json.dumps(s, separators=(",", ":"), sort_keys=True)


def _ids(m: Message) -> list[tuple[str, str]]:
    return [(k, v) for k, v in (("user_id", m.user_id), ("anonymous_id", m.anonymous_id)) if v]


def _line_value(m: Message) -> float:
    """An added product's price times its quantity (Segment's Product Added properties)."""
    properties = json.loads(m.line).get("properties") or {}
    try:
        return float(properties.get("price") or 0) * float(properties.get("quantity") or 1)
    except (TypeError, ValueError):
        return 0.0


def _merge(into: dict, absorbed: dict) -> None:
    """The live state of an anonymous person who turned out to be `into`."""
    for column in ("last_seen_at", "last_add_to_cart_at", "last_order_at"):
        into[column] = max(filter(None, (into[column], absorbed[column])), default=None)
    if (absorbed["last_product_viewed_at"] or "") > (into["last_product_viewed_at"] or ""):
        into["last_product_viewed"] = absorbed["last_product_viewed"]
        into["last_product_viewed_at"] = absorbed["last_product_viewed_at"]
    into["cart_value"] = round(into["cart_value"] + absorbed["cart_value"], 2)
    into["events_total"] += absorbed["events_total"]
    for minute, n in absorbed["minutes"].items():
        into["minutes"][minute] = into["minutes"].get(minute, 0) + n


def processor_from_settings(settings, consumer: str = "processor"):
    """The processor and the landing writer of the process's settings (orchestration/lib/settings.py)."""
    from orchestration.defs.ingest.sources_config import cached_sources_config
    from orchestration.defs.segments.loading import segment_catalog
    from orchestration.realtime.landing import LandingWriter

    client = broker.connect(settings.redis_url)
    client.ping()
    processor = Processor(
        client,
        Reference.load(settings.warehouse),
        segment_catalog(),
        cached_sources_config(settings.sources_config).taxonomy.dbt_vars(),
        settings.consent_default_allowed,
        consumer,
        warehouse=settings.warehouse,
    )
    return processor, LandingWriter(client, settings.landing_dir, consumer)
