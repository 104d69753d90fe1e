"""The real-time path in Dagster: the stream's health as observations and checks, and the daily
reconciliation of real-time and daily membership (docs/realtime.md)."""

from __future__ import annotations

import dagster as dg
import redis

from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.settings import redis_url
from orchestration.realtime import broker
from orchestration.realtime.reconcile import reconcile
from orchestration.realtime.webhooks import DEAD_LETTER

OWNER = "team:platform"
STREAM = dg.AssetKey(["realtime", "stream"])
MEMBERSHIP = dg.AssetKey(["marts", "segment_membership"])
MAX_LAG = 10_000  # messages the processor may be behind before the check fails


def _client(settings: SettingsResource) -> redis.Redis:
    return broker.connect(redis_url(settings.redis_port))


def stream_figures(client: redis.Redis) -> dict[str, int]:
    """Length, the processor's lag and pending messages, its counters, and the dead letters."""
    groups = {g["name"]: g for g in client.xinfo_groups(broker.EVENTS)} if client.exists(broker.EVENTS) else {}
    processor = groups.get(broker.PROCESSOR, {})
    length = client.xlen(broker.EVENTS)
    return {
        "stream_length": length,
        "processor_lag": length - (processor.get("entries-read") or 0) + processor.get("pending", 0),
        "processor_pending": processor.get("pending", 0),
        **{k: int(v) for k, v in client.hgetall(broker.STATS).items()},
        "webhook_dead_letters": client.xlen(DEAD_LETTER),
    }


@dg.multi_observable_source_asset(
    specs=[
        dg.AssetSpec(
            STREAM,
            group_name="realtime",
            owners=[OWNER],
            description="The collector's Redis stream and the processor's progress: observed every 5 minutes.",
            automation_condition=dg.AutomationCondition.cron_tick_passed("*/5 * * * *"),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "processor_keeps_up",
            asset=STREAM,
            description=f"The processor is fewer than {MAX_LAG:,} messages behind the stream.",
        )
    ],
)
def stream(settings: SettingsResource):
    try:
        figures = stream_figures(_client(settings))
    except redis.RedisError as exc:
        why = f"Redis does not answer: {exc}"
        yield dg.ObserveResult(asset_key=STREAM, metadata={"running": False, "why": why})
        yield dg.AssetCheckResult(
            asset_key=STREAM, check_name="processor_keeps_up", passed=False, metadata={"why": why}
        )
        return
    yield dg.ObserveResult(asset_key=STREAM, metadata={"running": True, **figures})
    yield dg.AssetCheckResult(
        asset_key=STREAM, check_name="processor_keeps_up", passed=figures["processor_lag"] < MAX_LAG, metadata=figures
    )


@dg.asset(
    key=["realtime", "reconciliation"],
    deps=[MEMBERSHIP],
    group_name="realtime",
    pool="duckdb",
    owners=[OWNER],
    description="Real-time against daily membership at the end of the daily run's as_of day, per real-time "
    "segment that both evaluate: persons in both, in one only.",
    check_specs=[
        dg.AssetCheckSpec(
            "stream_agrees_with_daily_run",
            asset=dg.AssetKey(["realtime", "reconciliation"]),
            description="No person is in a segment by one evaluation and not by the other.",
        )
    ],
)
def reconciliation(warehouse: WarehouseResource, settings: SettingsResource):
    from orchestration.defs.segments.loading import segment_catalog

    both = [n for n, s in segment_catalog().segments.items() if s.spec.refresh == "realtime" and not s.live_only]
    with warehouse.connect(read_only=True) as con:
        as_of = con.execute("SELECT max(as_of) FROM marts.segment_membership").fetchone()[0]
        try:
            rows = reconcile(con, _client(settings), as_of.date(), both) if as_of else None
        except (LookupError, redis.RedisError) as exc:
            rows, why = None, str(exc)
    if rows is None:
        yield dg.MaterializeResult(metadata={"compared": False, "why": why if as_of else "no daily membership yet"})
        yield dg.AssetCheckResult(
            check_name="stream_agrees_with_daily_run",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"why": "nothing to compare: " + (why if as_of else "no daily membership yet")},
        )
        return
    table = dg.MetadataValue.table(
        records=[
            dg.TableRecord({"segment": r.segment, "daily": r.daily, "stream": r.stream, "both": r.both}) for r in rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("segment", "string"),
                dg.TableColumn("daily", "int"),
                dg.TableColumn("stream", "int"),
                dg.TableColumn("both", "int"),
            ]
        ),
    )
    disagreement = sum(r.disagreement for r in rows)
    yield dg.MaterializeResult(
        metadata={"compared": True, "as_of": str(as_of.date()), "by_segment": table, "disagreement": disagreement}
    )
    yield dg.AssetCheckResult(
        check_name="stream_agrees_with_daily_run",
        passed=disagreement == 0,
        metadata={r.segment: r.disagreement for r in rows},
    )


realtime_assets = [stream, reconciliation]
realtime_checks: list = []
