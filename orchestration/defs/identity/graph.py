"""The identity graph: identifiers joined by evidence into persons, without over-merging.

Plain Python (no Dagster). Observed edges are accepted strongest first, then probabilistic ones,
Kruskal-style, into a union-find that refuses any merge which would give a person

- two `user_id`s (two registered accounts are two people, even on one shared tablet);
- two customer clusters, unless the edge itself is record evidence linking customers
  (CRM email/phone, a probabilistic CRM match);
- more identifiers than the cap.

So a component that breaks a limit is split on its weakest edges; nothing is merged wholesale.
A shared device goes to the person whose evidence for it is strongest and, on a tie, earliest;
the other person keeps everything else of theirs.

`person_id`s are stable: a person keeps the id that most of its identifiers had in the previous
map; a new person gets the hash of its earliest-seen identifier, so the same data always gives
the same ids and new data never renumbers existing people.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TYPE_RANK = {"customer_id": 0, "user_id": 1, "email": 2, "phone": 3, "anonymous_id": 4}
# Rules that are record-level evidence that two customer records are one customer.
CUSTOMER_LINK_RULES = frozenset({"crm_email", "crm_phone", "crm_probabilistic", "order_customer_email"})
# Inferred links come after every observed one, whatever their probability: a person's own
# accounts and orders attach first, so that a false match between two people's CRM records meets
# the one-user_id rule instead of splitting one of them.
PROBABILISTIC_RULES = frozenset({"crm_probabilistic"})


@dataclass(frozen=True)
class GraphLimits:
    max_identifiers_per_person: int = 200


@dataclass
class GraphResult:
    assignments: pd.DataFrame  # identifier_type, identifier, person_id, matched_by, match_score
    refused_edges: pd.DataFrame  # left/right identifiers, rule, weight, why
    stats: dict = field(default_factory=dict)


class _Sets:
    """Union-find with the per-set facts the merge constraints need."""

    def __init__(self, kinds: list[str]):
        n = len(kinds)
        self.parent = list(range(n))
        self.size = [1] * n
        self.users = [1 if k == "user_id" else 0 for k in kinds]
        self.customers = [1 if k == "customer_id" else 0 for k in kinds]

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> int:
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        self.users[a] += self.users[b]
        self.customers[a] = max(self.customers[a], self.customers[b])
        return a


def _hash_id(kind: str, value: str) -> str:
    return "p_" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


def _in_merge_order(nodes: pd.DataFrame, edges: pd.DataFrame, previous: pd.DataFrame | None):
    """(kinds, values) of the distinct nodes in first-seen order; the edges between known nodes as
    (left position, right position, rule, weight) in the order they are tried; and the previous
    person_id of each node that had one, as (positions, person_ids). DuckDB sorts and joins: at a
    million identifiers, string sorts in pandas and dicts keyed by string pairs cost more than the
    merge itself, and grew faster than the graph."""
    import duckdb

    probabilistic = ", ".join(f"'{rule}'" for rule in sorted(PROBABILISTIC_RULES))
    with duckdb.connect() as con:
        con.register("nodes_in", nodes)
        con.register("edges_in", edges)
        con.execute("""
            CREATE TEMP TABLE node_pos AS
            SELECT identifier_type, identifier,
                   row_number() OVER (ORDER BY min(first_seen_at) NULLS LAST, identifier_type, identifier) - 1 AS pos
            FROM nodes_in GROUP BY identifier_type, identifier
        """)
        ordered_nodes = con.execute("SELECT identifier_type, identifier FROM node_pos ORDER BY pos").df()
        ordered_edges = con.execute(f"""
            SELECT l.pos AS left_pos, r.pos AS right_pos, e.rule, e.weight
            FROM edges_in e
            JOIN node_pos l ON l.identifier_type = e.left_type AND l.identifier = e.left_id
            JOIN node_pos r ON r.identifier_type = e.right_type AND r.identifier = e.right_id
            ORDER BY e.rule IN ({probabilistic}), e.weight DESC NULLS LAST, e.first_seen_at NULLS LAST,
                     e.left_type, e.left_id, e.right_type, e.right_id, e.rule
        """).df()
        previous_ids = (np.empty(0, dtype=np.int64), [])
        if previous is not None and len(previous):
            con.register("previous_in", previous)
            found = con.execute(
                "SELECT n.pos, p.person_id FROM previous_in p JOIN node_pos n USING (identifier_type, identifier)"
            ).df()
            previous_ids = (found["pos"].to_numpy(dtype=np.int64), found["person_id"].tolist())
    return (
        ordered_nodes["identifier_type"].tolist(),
        ordered_nodes["identifier"].tolist(),
        ordered_edges,
        previous_ids,
    )


def resolve(
    nodes: pd.DataFrame, edges: pd.DataFrame, previous: pd.DataFrame | None = None, limits: GraphLimits = GraphLimits()
) -> GraphResult:
    """Persons from identifiers and evidence.

    nodes:    identifier_type, identifier, first_seen_at
    edges:    left_type, left_id, right_type, right_id, rule, weight, first_seen_at
    previous: identifier_type, identifier, person_id (the last published identity map), optional
    """
    kinds, values, ordered, previous_ids = _in_merge_order(nodes, edges, previous)
    sets = _Sets(kinds)
    joined_by: dict[int, tuple[str, float]] = {}
    refused = []
    for left, right, rule, weight in zip(
        ordered["left_pos"].tolist(),
        ordered["right_pos"].tolist(),
        ordered["rule"].tolist(),
        ordered["weight"].tolist(),
        strict=True,
    ):
        a, b = sets.find(left), sets.find(right)
        if a == b:
            continue
        why = None
        if sets.users[a] and sets.users[b]:
            why = "two user_ids"
        elif sets.customers[a] and sets.customers[b] and rule not in CUSTOMER_LINK_RULES:
            why = "two customer clusters"
        elif sets.size[a] + sets.size[b] > limits.max_identifiers_per_person:
            why = f"more than {limits.max_identifiers_per_person} identifiers"
        if why:
            refused.append((kinds[left], values[left], kinds[right], values[right], rule, float(weight), why))
            continue
        sets.union(a, b)
        for node in (left, right):
            joined_by.setdefault(node, (rule, float(weight)))

    roots = np.asarray(sets.parent, dtype=np.int64)
    while len(roots) and not (roots[roots] == roots).all():  # pointer jumping to each node's root
        roots = roots[roots]
    person_of_root = _person_ids(roots, kinds, values, previous_ids)
    assignments = pd.DataFrame(
        {
            "identifier_type": kinds,
            "identifier": values,
            "person_id": [person_of_root[r] for r in roots.tolist()],
            "matched_by": [joined_by.get(i, ("singleton", 1.0))[0] for i in range(len(kinds))],
            "match_score": [joined_by.get(i, ("singleton", 1.0))[1] for i in range(len(kinds))],
        }
    )
    sizes = np.bincount(roots, minlength=len(kinds))
    stats = {
        "persons": int((sizes > 0).sum()),
        "identifiers": len(kinds),
        "largest_person": int(sizes.max()) if len(kinds) else 0,
        "edges_accepted": int(len(ordered) - len(refused)),
        "edges_refused": len(refused),
        "refused_by_reason": dict(Counter(r[-1] for r in refused)),
        "probabilistic_edges": int(edges["rule"].isin(PROBABILISTIC_RULES).sum()),
    }
    refused_df = pd.DataFrame(
        refused, columns=["left_type", "left_id", "right_type", "right_id", "rule", "weight", "why"]
    )
    return GraphResult(assignments, refused_df, stats)


def resolve_in_batches(batches, limits: GraphLimits = GraphLimits()) -> tuple[GraphResult, dict[str, int]]:
    """`resolve` over independent parts of the graph, one at a time: an iterable of (nodes, edges,
    previous) where no edge and no previous person crosses two batches (connected components of the
    graph and the previous map, as spark_components computes them). The result is the one `resolve`
    gives for the whole graph, with the memory of the largest batch; with it, what changed against
    the previous map (compare_with_previous, summed over batches: exact, as no person spans two)."""
    results, changes = [], Counter({"identifiers_moved": 0, "merges": 0, "splits": 0})
    for nodes, edges, previous in batches:
        results.append(resolve(nodes, edges, previous, limits))
        changes.update(compare_with_previous(results[-1].assignments, previous))
    if len(results) == 1:
        return results[0], dict(changes)
    refused_by_reason = Counter()
    for result in results:
        refused_by_reason.update(result.stats["refused_by_reason"])
    stats = {
        key: sum(r.stats[key] for r in results)
        for key in ("persons", "identifiers", "edges_accepted", "edges_refused", "probabilistic_edges")
    }
    return GraphResult(
        pd.concat([r.assignments for r in results], ignore_index=True),
        pd.concat(
            [r.refused_edges for r in results if len(r.refused_edges)] or [results[0].refused_edges], ignore_index=True
        ),
        {
            **stats,
            "largest_person": max(r.stats["largest_person"] for r in results),
            "refused_by_reason": dict(refused_by_reason),
        },
    ), dict(changes)


def _person_ids(
    roots: np.ndarray, kinds: list[str], values: list[str], previous_ids: tuple[np.ndarray, list[str]]
) -> dict[int, str]:
    """Keep previous ids where the majority of a person's identifiers already had one (most votes
    first, then the person with the earliest-seen identifier); a new person gets the hash of its
    earliest-seen identifier. `roots` gives each node's person; nodes are in first-seen order."""
    earliest = pd.Series(np.arange(len(roots))).groupby(roots).min().sort_values()  # root -> earliest node
    positions, person_ids = previous_ids
    claims = (
        pd.DataFrame({"root": roots[positions], "pid": person_ids})
        .groupby(["root", "pid"])
        .size()
        .rename("votes")
        .reset_index()
    )
    claims["earliest"] = earliest.reindex(claims["root"]).to_numpy()
    claims = claims.sort_values(["votes", "earliest", "root", "pid"], ascending=[False, True, True, True])
    out: dict[int, str] = {}
    taken: set[str] = set()
    for root, pid in zip(claims["root"].tolist(), claims["pid"].tolist(), strict=True):
        if root not in out and pid not in taken:
            out[root] = pid
            taken.add(pid)
    for root, anchor in zip(earliest.index.tolist(), earliest.tolist(), strict=True):
        if root in out:
            continue
        pid = _hash_id(kinds[anchor], values[anchor])
        salt = 0
        while pid in taken:
            salt += 1
            pid = _hash_id(kinds[anchor], f"{values[anchor]}#{salt}")
        out[root] = pid
        taken.add(pid)
    return out


def compare_with_previous(assignments: pd.DataFrame, previous: pd.DataFrame | None) -> dict[str, int]:
    """What changed since the previous identity map, over identifiers seen in both: identifiers
    that moved to another person, persons that now join two or more earlier persons (merges), and
    earlier persons now spread over two or more persons (splits)."""
    import duckdb

    if previous is None or not len(previous):
        return {"identifiers_moved": 0, "merges": 0, "splits": 0}
    with duckdb.connect() as con:
        con.register("current_map", assignments[["identifier_type", "identifier", "person_id"]])
        con.register("previous_map", previous[["identifier_type", "identifier", "person_id"]])
        moved, merges, splits = con.execute("""
            WITH both_maps AS (
                SELECT n.person_id, p.person_id AS person_id_prev FROM current_map n JOIN previous_map p USING (identifier_type, identifier)
            )
            SELECT (SELECT count(*) FROM both_maps WHERE person_id <> person_id_prev),
                   (SELECT count(*) FROM (SELECT person_id FROM both_maps GROUP BY 1 HAVING count(DISTINCT person_id_prev) > 1)),
                   (SELECT count(*) FROM (SELECT person_id_prev FROM both_maps GROUP BY 1 HAVING count(DISTINCT person_id) > 1))
        """).fetchone()
    return {"identifiers_moved": int(moved), "merges": int(merges), "splits": int(splits)}


def identifiers_per_person_histogram(sizes: pd.Series) -> pd.Series:
    """Persons per size bin (1, 2, 3, 4, 5-9, 10-19, 20-49, 50+ identifiers)."""
    bins = [0, 1, 2, 3, 4, 9, 19, 49, float("inf")]
    labels = ["1", "2", "3", "4", "5-9", "10-19", "20-49", "50+"]
    return pd.cut(sizes, bins=bins, labels=labels).value_counts().reindex(labels, fill_value=0)
