"""Redis Streams as the broker: the stream and key names both sides use, and the consumer groups.

One stream carries every message the collector received, valid or not: the processor skips the
ones with a reason code, and the landing writer rolls them all into landing files, so the daily
batch run replays everything and quarantines the same lines with the same reasons.
"""

from __future__ import annotations

import datetime as dt
import json

import redis

EVENTS = "tessera:events"  # fields: line (the message as JSON), reason_code and reason when it failed a check
CHANGES = "tessera:segment_changes"  # fields: person_id, segment, change (entered/exited), at
PROCESSOR = "processor"  # consumer group: live state and membership
LANDING = "landing"  # consumer group: landing files for the batch run
PREFIX = "tessera:rt:"
KEEP_S = 86400  # how long the streams keep an entry every consumer group has taken
IDS = f"{PREFIX}ids"  # hash "<type>:<id>" -> person: the links the stream made
SEGMENTS = f"{PREFIX}segments"  # hash: the processor's real-time segments -> their type
STATS = f"{PREFIX}stats"  # hash: the processor's counters (processed, quarantined, duplicates...)
OPEN_DAY = f"{PREFIX}open_day"  # the UTC day the processor works in; past midnight it closes it


def closing(day) -> str:
    """Hash segment -> size at the end of `day`; `<key>:<segment>` is the set of its persons."""
    return f"{PREFIX}closing:{day}"


def key(kind: str, person: str) -> str:
    """A person's key: state and members (JSON values), links (a set of "<type>:<id>")."""
    return f"{PREFIX}{kind}:{person}"


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, health_check_interval=30)


def reachable(url: str) -> redis.Redis | None:
    """The real-time path's Redis if it answers; None where it does not run (a batch-only deployment)."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=60)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    return client


def ensure_groups(client: redis.Redis) -> None:
    """The consumer groups, created once, reading the stream from its start."""
    for group in (PROCESSOR, LANDING):
        try:
            client.xgroup_create(EVENTS, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def read_group(
    client: redis.Redis, group: str, consumer: str, pending: bool, count: int, block_ms: int
) -> tuple[list[tuple[str, dict]], bool]:
    """(entries, pending still): while `pending`, the entries delivered to `consumer` before a restart
    and never acknowledged; then new ones, waiting up to `block_ms` (0: not at all)."""
    if pending:
        reply = client.xreadgroup(group, consumer, {EVENTS: "0"}, count=count)
        if reply and reply[0][1]:
            return reply[0][1], True
    reply = client.xreadgroup(group, consumer, {EVENTS: ">"}, count=count, block=block_ms or None)
    return (reply[0][1] if reply else []), False


class LiveMembership:
    """The processor's membership, as the lookup API reads it: for a person the stream has evaluated,
    the real-time segments they are in now replace the daily run's verdict on those segments."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def realtime(self) -> dict[str, str]:
        """The real-time segments of the running processor, with their types."""
        return self.client.hgetall(SEGMENTS)

    def person(self, kind: str, value: str) -> str | None:
        """The person the stream links the identifier to (it may have joined two since the daily run)."""
        return self.client.hget(IDS, f"{kind}:{value}")

    def segments(self, person: str) -> dict[str, dt.datetime] | None:
        """The real-time segments `person` is in with their entry times; None when never evaluated."""
        stored = self.client.get(key("members", person))
        if stored is None:
            return None
        members = json.loads(stored)
        return {name: dt.datetime.fromisoformat(at) for name, at in members.items() if name != "_evaluated"}


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def trim(client: redis.Redis, stream: str, keep_s: float, now_ms: int) -> int:
    """Drop the entries of `stream` that every consumer group has taken and acknowledged, once they
    are older than `keep_s`; returns how many went. What a group has not read, or holds pending (a
    consumer killed before its acknowledgement), stays."""
    if not client.exists(stream):
        return 0
    bounds = [(max(0, now_ms - int(keep_s * 1000)), 0)]
    for group in client.xinfo_groups(stream):
        bounds.append(_id(group["last-delivered-id"]))
        if group["pending"]:
            bounds.append(_id(client.xpending(stream, group["name"])["min"]))
    ms, seq = min(bounds)
    return client.xtrim(stream, minid=f"{ms}-{seq}", approximate=False)
