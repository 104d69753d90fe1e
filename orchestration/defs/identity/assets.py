"""Identity resolution assets: Splink matches between CRM records, then the identity graph."""

import hashlib
import math
from pathlib import Path

import dagster as dg

from orchestration.defs.identity import matching
from orchestration.defs.identity.graph import (
    CUSTOMER_LINK_RULES,
    GraphLimits,
    identifiers_per_person_histogram,
    resolve_in_batches,
)
from orchestration.defs.identity.matching import MatchSettings, match_customer_records
from orchestration.defs.identity.spark_components import connected_components
from orchestration.defs.metadata import table_metadata
from orchestration.defs.resources import WarehouseResource
from orchestration.lib import figures
from orchestration.lib.warehouse import table_exists, table_from_frame, transaction

OWNER = "team:identity"
PROBABILISTIC_RULE = "crm_probabilistic"
assert PROBABILISTIC_RULE in CUSTOMER_LINK_RULES


class IdentityConfig(dg.Config):
    match_threshold: float = MatchSettings.threshold
    max_identifiers_per_person: int = GraphLimits.max_identifiers_per_person
    # Hard guards on probabilistic CRM matches (see MatchSettings); null turns one off.
    max_birth_date_gap_days: int | None = MatchSettings.max_birth_date_gap_days
    min_name_similarity: float | None = MatchSettings.min_name_similarity
    max_block_size: int = MatchSettings.max_block_size
    rematch: bool = False
    """Run Splink even when the CRM records, the match settings and the matching code are the same as
    when the stored pairs were computed (they are then reused)."""

    def match_settings(self) -> MatchSettings:
        return MatchSettings(
            threshold=self.match_threshold,
            max_birth_date_gap_days=self.max_birth_date_gap_days,
            min_name_similarity=self.min_name_similarity,
            max_block_size=self.max_block_size,
        )


@dg.asset(
    key=["intermediate", "crm_match_pairs"],
    deps=[dg.AssetKey(["intermediate", "int_crm__customer_records"])],
    group_name="identity",
    owners=[OWNER],
    kinds={"duckdb", "python", "splink"},
    pool="duckdb",
    description="Pairs of CRM records that share no key but are one person (Fellegi-Sunter via Splink), with their match probability.",
)
def crm_match_pairs(config: IdentityConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    settings = config.match_settings()
    with warehouse.connect() as con:
        records, records_hash = con.execute(
            "SELECT count(*), sum(hash(r)) FROM intermediate.int_crm__customer_records r"
        ).fetchone()
        digest = _match_inputs_digest(records, records_hash, settings)
        reused = (
            not config.rematch
            and table_exists(con, "intermediate", "crm_match_pairs_inputs")
            and con.execute("SELECT digest FROM intermediate.crm_match_pairs_inputs").fetchone() == (digest,)
        )
        if not reused:
            pairs = match_customer_records(
                con.execute("SELECT * FROM intermediate.int_crm__customer_records").df(), settings
            )
            with transaction(con):
                table_from_frame(con, "intermediate.crm_match_pairs", pairs)
                con.execute(
                    "CREATE OR REPLACE TABLE intermediate.crm_match_pairs_inputs AS SELECT ? AS digest", [digest]
                )
        metadata = table_metadata(con, "intermediate.crm_match_pairs")
        median = con.execute(
            "SELECT coalesce(median(match_probability), 0.0) FROM intermediate.crm_match_pairs"
        ).fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "crm_records": records,
            "threshold": config.match_threshold,
            "median_match_probability": float(median),
            "reused": dg.MetadataValue.bool(reused),
            "reused_because": "the CRM records, match settings and matching code are unchanged since the pairs were computed"
            if reused
            else "",
        }
    )


def _match_inputs_digest(records: int, records_hash, settings: MatchSettings) -> str:
    """What the pairs depend on: every CRM record (their count and a sum of row hashes, which row order
    does not change), the settings and the matching code. A daily run whose CRM export did not change
    then skips Splink."""
    return hashlib.sha256(
        f"{(records, records_hash)}|{settings}|".encode() + Path(matching.__file__).read_bytes()
    ).hexdigest()


# The graph as portable SQL: one batch is everything whose node joins `{batch}` (all, on DuckDB).
GRAPH_SQL = {
    "nodes": "SELECT n.identifier_type, n.identifier, n.first_seen_at FROM intermediate.int_identity__nodes n {batch}",
    "edges": f"""
        SELECT e.left_type, e.left_id, e.right_type, e.right_id, e.rule, e.weight, e.first_seen_at
        FROM intermediate.int_identity__edges e {{batch}}
        UNION ALL
        SELECT 'customer_id', m.customer_id_l, 'customer_id', m.customer_id_r, '{PROBABILISTIC_RULE}',
               m.match_probability, least(l.first_seen_at, r.first_seen_at)
        FROM intermediate.crm_match_pairs m
        JOIN intermediate.int_identity__nodes l ON l.identifier_type = 'customer_id' AND l.identifier = m.customer_id_l
        JOIN intermediate.int_identity__nodes r ON r.identifier_type = 'customer_id' AND r.identifier = m.customer_id_r
        {{match_batch}}""",
    "previous": "SELECT p.identifier_type, p.identifier, p.person_id FROM marts.identity_map p {batch}",
}
BATCH_JOIN = {
    "nodes": ("n.identifier_type", "n.identifier"),
    "edges": ("e.left_type", "e.left_id"),
    "match_batch": ("'customer_id'", "m.customer_id_l"),
    "previous": ("p.identifier_type", "p.identifier"),
}
# Identifiers per batch when the graph is resolved from the Spark engine.
BATCH_IDENTIFIERS = 2_000_000


def _graph_frames(run_sql, has_previous: bool, batch: str | None = None):
    """(nodes, edges with the probabilistic matches, previous map or None) of one batch. `run_sql`
    runs a query on the engine; `batch` is a query of the batch's node keys ("<type>:<value>")."""

    def join(name: str) -> str:
        kind, value = BATCH_JOIN[name]
        return f"JOIN ({batch}) b ON b.node = concat({kind}, ':', {value})" if batch else ""

    nodes = run_sql(GRAPH_SQL["nodes"].format(batch=join("nodes")))
    edges = run_sql(GRAPH_SQL["edges"].format(batch=join("edges"), match_batch=join("match_batch")))
    previous = run_sql(GRAPH_SQL["previous"].format(batch=join("previous"))) if has_previous else None
    return nodes, edges, previous


def _batches_on_spark(context: dg.AssetExecutionContext, has_previous: bool):
    """The graph in batches from the Spark engine: connected components on the cluster (of the
    evidence edges, the probabilistic matches and the previous persons, so that neither an edge nor
    a previous person spans two batches), then whole components together, about BATCH_IDENTIFIERS
    identifiers per batch."""
    from orchestration.lib import spark

    links = [
        "SELECT left_type, left_id, right_type, right_id FROM intermediate.int_identity__edges",
        "SELECT 'customer_id', customer_id_l, 'customer_id', customer_id_r FROM intermediate.crm_match_pairs",
    ]
    if has_previous:
        links.append("SELECT identifier_type, identifier, 'previous_person', person_id FROM marts.identity_map")
    with spark.connect() as cursor:
        components = connected_components(cursor, edges="(" + " UNION ALL ".join(links) + ") AS links")
        count = math.ceil(components.nodes / BATCH_IDENTIFIERS)
        context.log.info(
            f"Connected components on Spark: {components.components:,} components of {components.nodes:,} "
            f"nodes in {components.rounds} rounds; resolved in {count} batch(es)"
        )
        for index in range(count):
            batch = f"SELECT node FROM {components.table} WHERE pmod(hash(component), {count}) = {index}"
            yield _graph_frames(lambda sql: spark.read_frame(cursor, sql), has_previous, batch)


@dg.asset(
    key=["intermediate", "identity_assignments"],
    deps=[
        dg.AssetKey(["intermediate", "int_identity__nodes"]),
        dg.AssetKey(["intermediate", "int_identity__edges"]),
        crm_match_pairs,
    ],
    group_name="identity",
    owners=[OWNER],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="Every identifier assigned to a person: connected components of the identity graph, split where a "
    "person would get two user_ids, two customer clusters or too many identifiers. person_ids are kept from "
    "the previous identity map.",
)
def identity_assignments(
    context: dg.AssetExecutionContext, config: IdentityConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    limits = GraphLimits(max_identifiers_per_person=config.max_identifiers_per_person)
    with warehouse.connect() as con:
        has_previous = table_exists(con, "marts", "identity_map")
        if warehouse.on_spark:
            warehouse.publish(con, ["intermediate.crm_match_pairs"])
            batches = _batches_on_spark(context, has_previous)
        else:
            batches = [_graph_frames(lambda sql: con.execute(sql).df(), has_previous)]
        result, changes = resolve_in_batches(batches, limits)
        with transaction(con):
            table_from_frame(con, "intermediate.identity_assignments", result.assignments)
            table_from_frame(con, "intermediate.identity_refused_edges", result.refused_edges)
        warehouse.publish(con, ["intermediate.identity_assignments"])
        metadata = table_metadata(con, "intermediate.identity_assignments")
    stats = result.stats
    sizes = result.assignments.groupby("person_id").size()
    context.log.info(
        f"{stats['persons']:,} persons from {stats['identifiers']:,} identifiers; "
        f"{stats['edges_refused']:,} edges refused {stats['refused_by_reason']}"
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "persons": stats["persons"],
            "identifiers_per_person": round(stats["identifiers"] / max(stats["persons"], 1), 3),
            "largest_person": stats["largest_person"],
            "edges_accepted": stats["edges_accepted"],
            "edges_refused": dg.MetadataValue.json({"total": stats["edges_refused"], **stats["refused_by_reason"]}),
            "identifiers_moved_since_previous_run": changes["identifiers_moved"],
            "persons_merged_since_previous_run": changes["merges"],
            "persons_split_since_previous_run": changes["splits"],
            "probabilistic_edges": stats["probabilistic_edges"],
            "identifiers_per_person_distribution": dg.MetadataValue.md(
                figures.markdown_image(
                    figures.histogram(
                        identifiers_per_person_histogram(sizes), "Identifiers per person", "identifiers (binned)"
                    ),
                    "identifiers per person",
                )
            ),
        }
    )
