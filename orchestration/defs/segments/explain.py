"""why(person, segment): the rule with each clause's value for one person.

Cluster segments add the distance to the cluster's centroid; propensity segments add the
(calibrated) probability, its decile and the features that raise it most
(ml.propensity.top_contributions); every buyer's explanation adds their lifetime value.
"""

from __future__ import annotations

import json

import duckdb

from orchestration.defs.segments.catalog import Catalog
from orchestration.defs.segments.membership import ATTRIBUTES, concrete_segments
from orchestration.lib.identifiers import IdentifierError, lookup_key, person_of
from orchestration.lib.warehouse import table_exists

LIFETIME_VALUE = ["p_alive", "expected_purchases_30d", "expected_purchases_12m", "expected_value_12m"]


class ExplainError(LookupError):
    """The person or segment is unknown; the message says which."""


def resolve_person(con: duckdb.DuckDBPyConnection, identifier_type: str, value: str) -> str:
    try:
        kind, key = lookup_key(identifier_type, value)
    except IdentifierError as exc:
        raise ExplainError(str(exc)) from None
    person = person_of(con, kind, key)
    if person is None:
        raise ExplainError(f"No person has {identifier_type} '{value}' in marts.identity_map.")
    return person


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else (float(value) if hasattr(value, "as_tuple") else value)


def explain(con: duckdb.DuckDBPyConnection, catalog: Catalog, person_id: str, segment_name: str) -> dict:
    segments = {s.name: s for s in concrete_segments(con, catalog)}
    segment = segments.get(segment_name)
    if segment is None:
        raise ExplainError(f"Unknown segment '{segment_name}'. Segments: {', '.join(sorted(segments))}.")
    compiled = segment.compiled
    clauses = compiled.clauses
    columns = sorted({c for clause in clauses for c in clause.columns} | set(compiled.columns))
    select = [f"{compiled.sql.text} AS _matches", "personalization_opt_in"]
    params = list(compiled.sql.params)
    for i, clause in enumerate(clauses):
        select.append(f"{clause.sql.text} AS _clause_{i}")
        params += clause.sql.params
    select += [f'"{c}"' for c in columns]
    extra = [
        "cluster_id",
        "cluster_name",
        "distance_to_centroid",
        "purchase_30d_score",
        "purchase_30d_decile",
        "as_of",
        *LIFETIME_VALUE,
    ]
    select += extra
    cursor = con.execute(f"SELECT {', '.join(select)} FROM {ATTRIBUTES} WHERE person_id = ?", [*params, person_id])
    row = cursor.fetchone()
    if row is None:
        raise ExplainError(f"Person {person_id} has no row in {ATTRIBUTES} (no features at the scoring date).")
    values = dict(zip([d[0] for d in cursor.description], row, strict=True))
    member = (
        bool(
            con.execute(
                "SELECT count(*) FROM marts.segment_membership WHERE person_id = ? AND segment_name = ?",
                [person_id, segment_name],
            ).fetchone()[0]
        )
        if table_exists(con, "marts", "segment_membership")
        else False
    )
    out = {
        "person_id": person_id,
        "segment": segment_name,
        "type": segment.spec.type,
        "rule": compiled.rule.strip(),
        "as_of": _plain(values["as_of"]),
        "member": member,
        "rule_matches": bool(values["_matches"]),
        "personalization_opt_in": values["personalization_opt_in"],
        "clauses": [
            {
                "clause": clause.text.strip(),
                "value": values[f"_clause_{i}"],
                "inputs": {c: _plain(values[c]) for c in clause.columns},
            }
            for i, clause in enumerate(clauses)
        ],
    }
    if segment.spec.type == "cluster":
        out["cluster"] = {
            "cluster_id": values["cluster_id"],
            "cluster_name": values["cluster_name"],
            "distance_to_centroid": values["distance_to_centroid"],
        }
    if segment.spec.type == "propensity":
        top = con.execute(
            "SELECT top_features FROM marts.propensity_scores WHERE person_id = ? AND model_name = 'purchase_30d'",
            [person_id],
        ).fetchone()
        out["propensity"] = {
            "model": "purchase_30d",
            "score": values["purchase_30d_score"],
            "decile": values["purchase_30d_decile"],
            "top_features": json.loads(top[0]) if top and top[0] else [],
        }
    if values["p_alive"] is not None:  # buyers only
        out["lifetime_value"] = {c: _plain(values[c]) for c in LIFETIME_VALUE}
    return out


def render(explanation: dict) -> str:
    """The explanation as text for the command line."""
    verdict = "is a member" if explanation["member"] else "is not a member"
    lines = [
        f"{explanation['person_id']} {verdict} of {explanation['segment']} ({explanation['type']}) "
        f"as of {explanation['as_of']}",
        f"rule: {explanation['rule']}",
        f"rule matches: {explanation['rule_matches']}; personalization_opt_in: {explanation['personalization_opt_in']}",
    ]
    for clause in explanation["clauses"]:
        inputs = ", ".join(f"{k}={v}" for k, v in clause["inputs"].items())
        lines.append(f"  [{'x' if clause['value'] else ' '}] {clause['clause']}    ({inputs})")
    if "cluster" in explanation:
        c = explanation["cluster"]
        lines.append(
            f"cluster {c['cluster_id']} '{c['cluster_name']}', distance to centroid {c['distance_to_centroid']}"
        )
    if "propensity" in explanation:
        p = explanation["propensity"]
        top = ", ".join(f"{t['feature']} (+{t['contribution']})" for t in p["top_features"]) or "none"
        lines.append(f"{p['model']} probability {p['score']} (decile {p['decile']}); raised most by: {top}")
    if "lifetime_value" in explanation:
        v = explanation["lifetime_value"]
        lines.append(
            f"lifetime value: P(alive) {v['p_alive']}, expected purchases {v['expected_purchases_30d']} in 30 "
            f"days and {v['expected_purchases_12m']} in 12 months, expected 12-month value "
            f"{v['expected_value_12m']}"
        )
    return "\n".join(lines)
