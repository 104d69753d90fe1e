"""Redis Streams as the broker: the stream and key names both sides use, and the consumer groups.

One stream carries every message the collector received, valid or not: the processor skips the
ones with a reason code, and the landing writer rolls them all into landing files, so the daily
batch run replays everything and quarantines the same lines with the same reasons.
"""

from __future__ import annotations

import redis

EVENTS = "tessera:events"  # fields: line (the message as JSON), reason_code and reason when it failed a check
CHANGES = "tessera:segment_changes"  # fields: person_id, segment, change (entered/exited), at
PROCESSOR = "processor"  # consumer group: live state and membership
LANDING = "landing"  # consumer group: landing files for the batch run
PREFIX = "tessera:rt:"


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, health_check_interval=30)


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
