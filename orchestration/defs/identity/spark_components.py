"""Connected components of the identity graph on a Spark cluster, in Spark SQL over Thrift.

Plain Python (no Dagster). The graph is `int_identity__nodes` and `int_identity__edges` as dbt builds
them on Spark. Label propagation, as GraphFrames does it: every node starts with its own id as label
and repeatedly takes the smallest label among itself and its neighbours; each round also jumps to
the label of its label (pointer jumping), so a long chain settles in about log2(length) rounds
instead of its length. Each round is one Spark job on the cluster; only the count of changed labels
comes back to Python.

The result partitions the identifiers the way the Python union-find would without its merge
constraints; the constrained merge (graph.resolve) then only ever needs one component at a time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentsResult:
    table: str  # node, component: one row per identifier ("<type>:<value>")
    rounds: int
    nodes: int
    components: int


def _node(kind: str, value: str) -> str:
    return f"concat({kind}, ':', {value})"


def connected_components(
    cursor,
    nodes: str = "intermediate.int_identity__nodes",
    edges: str = "intermediate.int_identity__edges",
    out: str = "intermediate.identity_components",
    max_rounds: int = 50,
) -> ComponentsResult:
    """Write `out` (node, component) on the cluster; the component is the smallest node id in it."""
    schema = out.split(".")[0]
    labels, step, pairs = f"{schema}._cc_labels", f"{schema}._cc_step", f"{schema}._cc_pairs"

    def run(sql: str) -> None:
        cursor.execute(sql)

    def replace(table: str, select: str) -> None:
        run(f"DROP TABLE IF EXISTS {table}")
        run(f"CREATE TABLE {table} USING parquet AS {select}")

    replace(
        pairs,
        f"""
        SELECT {_node("left_type", "left_id")} AS src, {_node("right_type", "right_id")} AS dst FROM {edges}
        UNION ALL
        SELECT {_node("right_type", "right_id")}, {_node("left_type", "left_id")} FROM {edges}""",
    )
    replace(
        labels,
        f"""
        SELECT node, node AS label FROM (
            SELECT {_node("identifier_type", "identifier")} AS node FROM {nodes}
            UNION SELECT src FROM {pairs}
        ) all_nodes""",
    )
    rounds = 0
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(
                f"Connected components did not settle in {max_rounds} rounds of label propagation; "
                "the identity graph has an unusually long chain. Raise max_rounds."
            )
        # The smallest label among a node and its neighbours, then the label of that label.
        replace(
            step,
            f"""
            WITH neighbour AS (
                SELECT p.src AS node, min(l.label) AS label
                FROM {pairs} p JOIN {labels} l ON l.node = p.dst
                GROUP BY p.src
            ),
            smallest AS (
                SELECT l.node, least(l.label, coalesce(n.label, l.label)) AS label
                FROM {labels} l LEFT JOIN neighbour n ON n.node = l.node
            )
            SELECT s.node, least(s.label, coalesce(j.label, s.label)) AS label
            FROM smallest s LEFT JOIN smallest j ON j.node = s.label""",
        )
        cursor.execute(f"SELECT count(*) FROM {step} s JOIN {labels} l ON l.node = s.node WHERE s.label <> l.label")
        changed = cursor.fetchall()[0][0]
        run(f"DROP TABLE {labels}")
        run(f"ALTER TABLE {step} RENAME TO {labels}")
        if changed == 0:
            break
    replace(out, f"SELECT node, label AS component FROM {labels}")
    for table in (labels, pairs):
        run(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"SELECT count(*), count(DISTINCT component) FROM {out}")
    node_count, component_count = cursor.fetchall()[0]
    return ComponentsResult(out, rounds, int(node_count), int(component_count))
