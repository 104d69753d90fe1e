"""Identity resolution assets: Splink matches between CRM records, then the identity graph."""

from typing import Optional

import dagster as dg
import pandas as pd

from orchestration.defs.identity.graph import (
    CUSTOMER_LINK_RULES,
    GraphLimits,
    compare_with_previous,
    identifiers_per_person_histogram,
    resolve,
)
from orchestration.defs.identity.matching import MatchSettings, match_customer_records
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
    max_birth_date_gap_days: Optional[int] = MatchSettings.max_birth_date_gap_days
    min_name_similarity: Optional[float] = MatchSettings.min_name_similarity


@dg.asset(
    key=["intermediate", "crm_match_pairs"],
    deps=[dg.AssetKey(["intermediate", "int_crm__customer_records"])],
    group_name="identity", owners=[OWNER], kinds={"duckdb", "python", "splink"}, pool="duckdb",
    description="Pairs of CRM records that share no key but are one person (Fellegi-Sunter via Splink), with their match probability.",
)
def crm_match_pairs(config: IdentityConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        records = con.execute("SELECT * FROM intermediate.int_crm__customer_records").df()
        pairs = match_customer_records(records, MatchSettings(
            threshold=config.match_threshold, max_birth_date_gap_days=config.max_birth_date_gap_days,
            min_name_similarity=config.min_name_similarity))
        table_from_frame(con, "intermediate.crm_match_pairs", pairs)
        metadata = table_metadata(con, "intermediate.crm_match_pairs")
    return dg.MaterializeResult(metadata={
        **metadata, "crm_records": len(records), "threshold": config.match_threshold,
        "median_match_probability": float(pairs["match_probability"].median()) if len(pairs) else 0.0,
    })


@dg.asset(
    key=["intermediate", "identity_assignments"],
    deps=[dg.AssetKey(["intermediate", "int_identity__nodes"]), dg.AssetKey(["intermediate", "int_identity__edges"]),
          crm_match_pairs],
    group_name="identity", owners=[OWNER], kinds={"duckdb", "python"}, pool="duckdb",
    description="Every identifier assigned to a person: connected components of the identity graph, split where a "
                "person would get two user_ids, two customer clusters or too many identifiers. person_ids are kept from "
                "the previous identity map.",
)
def identity_assignments(context: dg.AssetExecutionContext, config: IdentityConfig,
                         warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        nodes = con.execute("SELECT identifier_type, identifier, first_seen_at FROM intermediate.int_identity__nodes").df()
        edges = con.execute("SELECT left_type, left_id, right_type, right_id, rule, weight, first_seen_at "
                            "FROM intermediate.int_identity__edges").df()
        matches = con.execute(f"""
            SELECT 'customer_id' AS left_type, m.customer_id_l AS left_id, 'customer_id' AS right_type,
                   m.customer_id_r AS right_id, '{PROBABILISTIC_RULE}' AS rule, m.match_probability AS weight,
                   least(l.first_seen_at, r.first_seen_at) AS first_seen_at
            FROM intermediate.crm_match_pairs m
            JOIN intermediate.int_identity__nodes l ON l.identifier_type = 'customer_id' AND l.identifier = m.customer_id_l
            JOIN intermediate.int_identity__nodes r ON r.identifier_type = 'customer_id' AND r.identifier = m.customer_id_r
        """).df()
        previous = (con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()
                    if table_exists(con, "marts", "identity_map") else None)
        result = resolve(nodes, pd.concat([edges, matches], ignore_index=True), previous,
                         GraphLimits(max_identifiers_per_person=config.max_identifiers_per_person))
        with transaction(con):
            table_from_frame(con, "intermediate.identity_assignments", result.assignments)
            table_from_frame(con, "intermediate.identity_refused_edges", result.refused_edges)
        metadata = table_metadata(con, "intermediate.identity_assignments")
    stats = result.stats
    changes = compare_with_previous(result.assignments, previous)
    sizes = result.assignments.groupby("person_id").size()
    context.log.info(f"{stats['persons']:,} persons from {stats['identifiers']:,} identifiers; "
                     f"{stats['edges_refused']:,} edges refused {stats['refused_by_reason']}")
    return dg.MaterializeResult(metadata={
        **metadata,
        "persons": stats["persons"],
        "identifiers_per_person": round(stats["identifiers"] / max(stats["persons"], 1), 3),
        "largest_person": stats["largest_person"],
        "edges_accepted": stats["edges_accepted"],
        "edges_refused": dg.MetadataValue.json({"total": stats["edges_refused"], **stats["refused_by_reason"]}),
        "identifiers_moved_since_previous_run": changes["identifiers_moved"],
        "persons_merged_since_previous_run": changes["merges"],
        "persons_split_since_previous_run": changes["splits"],
        "probabilistic_edges": len(matches),
        "identifiers_per_person_distribution": dg.MetadataValue.md(figures.markdown_image(figures.histogram(
            identifiers_per_person_histogram(sizes), "Identifiers per person", "identifiers (binned)"),
            "identifiers per person")),
    })
