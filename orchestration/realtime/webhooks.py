"""Entries and exits to webhooks: signed, retried with back-off, dead-lettered after a limit.

The sender reads `tessera:segment_changes` in the consumer group `webhooks` and POSTs each change
as JSON to every URL of TESSERA_WEBHOOK_URLS:

    {"id": "<stream id>", "person_id": "...", "segment": "...", "change": "entered", "at": "..."}

with `X-Tessera-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by
TESSERA_WEBHOOK_SECRET>` and `X-Tessera-Timestamp: <unix seconds>`, as Stripe and GitHub sign theirs:
a receiver recomputes the HMAC and refuses an old timestamp. A 2xx is delivered. Anything else is
tried again after 1, 2, 4... seconds (capped at 60), and after `max_attempts` the change goes to the
stream `tessera:webhooks:dead_letter` with the last error. Delivery is at least once: a receiver
deduplicates by `id`. A slow or failing URL delays only its own deliveries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import time

import redis
import requests

from orchestration.realtime import broker

log = logging.getLogger("tessera.webhooks")

GROUP = "webhooks"
DEAD_LETTER = "tessera:webhooks:dead_letter"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclasses.dataclass
class Delivery:
    change_id: str
    url: str
    body: bytes
    attempts: int = 0
    due: float = 0.0
    error: str = ""


class WebhookSender:
    def __init__(
        self,
        client: redis.Redis,
        urls: list[str],
        secret: str,
        max_attempts: int = 8,
        timeout_s: float = 5.0,
        consumer: str = "webhooks",
        clock=time.monotonic,
    ):
        if urls and len(secret) < 16:
            raise ValueError("TESSERA_WEBHOOK_SECRET must be at least 16 characters: receivers check the signature.")
        self.client, self.urls, self.secret = client, urls, secret
        self.max_attempts, self.timeout_s, self.consumer, self.clock = max_attempts, timeout_s, consumer, clock
        self.session = requests.Session()
        self.waiting: list[Delivery] = []
        self.open: dict[str, int] = {}  # change id -> deliveries not yet settled
        self.delivered = self.dead = 0
        self._pending = True
        try:
            client.xgroup_create(broker.CHANGES, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, block_ms: int = 100) -> int:
        """Take new changes, attempt the deliveries due; returns the attempts made."""
        entries: list = []
        if self._pending:  # the changes taken before a restart and never settled: once, at the start
            start = "0"
            while reply := self.client.xreadgroup(GROUP, self.consumer, {broker.CHANGES: start}, count=500)[0][1]:
                entries += reply
                start = reply[-1][0]
            self._pending = False
        if not entries:
            wait = block_ms if not self.waiting else 0
            reply = self.client.xreadgroup(GROUP, self.consumer, {broker.CHANGES: ">"}, count=500, block=wait or None)
            entries = reply[0][1] if reply else []
        for change_id, fields in entries:
            body = json.dumps({"id": change_id, **fields}, sort_keys=True).encode()
            self.open[change_id] = len(self.urls)
            self.waiting += [Delivery(change_id, url, body) for url in self.urls]
            if not self.urls:
                self._settle(change_id)
        now = self.clock()
        due = [d for d in self.waiting if d.due <= now]
        for delivery in due:
            self._attempt(delivery)
        return len(due)

    def _attempt(self, d: Delivery) -> None:
        d.attempts += 1
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Tessera-Timestamp": stamp,
            "X-Tessera-Signature": signature(self.secret, stamp, d.body),
        }
        try:
            response = self.session.post(d.url, data=d.body, headers=headers, timeout=self.timeout_s)
            ok, d.error = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            ok, d.error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.delivered += 1
            self._done(d)
        elif d.attempts >= self.max_attempts:
            self.dead += 1
            log.warning("Dead-lettered change %s for %s after %d attempts: %s", d.change_id, d.url, d.attempts, d.error)
            self.client.xadd(
                DEAD_LETTER,
                {"change_id": d.change_id, "url": d.url, "body": d.body, "attempts": d.attempts, "error": d.error},
            )
            self._done(d)
        else:
            d.due = self.clock() + min(60.0, 2.0 ** (d.attempts - 1))

    def _done(self, d: Delivery) -> None:
        self.waiting.remove(d)
        self.open[d.change_id] -= 1
        if not self.open[d.change_id]:
            self._settle(d.change_id)

    def _settle(self, change_id: str) -> None:
        """Every URL has the change, or it is dead-lettered: it leaves the group's pending list."""
        self.client.xack(broker.CHANGES, GROUP, change_id)
        del self.open[change_id]
