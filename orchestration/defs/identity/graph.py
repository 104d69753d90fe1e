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
from collections import Counter, defaultdict
from dataclasses import dataclass, field

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


def resolve(nodes: pd.DataFrame, edges: pd.DataFrame, previous: pd.DataFrame | None = None,
            limits: GraphLimits = GraphLimits()) -> GraphResult:
    """Persons from identifiers and evidence.

    nodes:    identifier_type, identifier, first_seen_at
    edges:    left_type, left_id, right_type, right_id, rule, weight, first_seen_at
    previous: identifier_type, identifier, person_id (the last published identity map), optional
    """
    nodes = nodes.sort_values(["first_seen_at", "identifier_type", "identifier"], kind="stable").drop_duplicates(
        ["identifier_type", "identifier"]).reset_index(drop=True)
    kinds = nodes["identifier_type"].tolist()
    values = nodes["identifier"].tolist()
    index = {(k, v): i for i, (k, v) in enumerate(zip(kinds, values))}
    sets = _Sets(kinds)
    joined_by: dict[int, tuple[str, float]] = {}
    refused = []

    ordered = edges.assign(_left=[index.get(k) for k in zip(edges["left_type"], edges["left_id"])],
                           _right=[index.get(k) for k in zip(edges["right_type"], edges["right_id"])],
                           _inferred=edges["rule"].isin(PROBABILISTIC_RULES))
    ordered = ordered.dropna(subset=["_left", "_right"]).sort_values(
        ["_inferred", "weight", "first_seen_at", "left_type", "left_id", "right_type", "right_id"],
        ascending=[True, False, True, True, True, True, True], kind="stable")
    for left, right, rule, weight in zip(ordered["_left"].astype(int), ordered["_right"].astype(int),
                                         ordered["rule"], ordered["weight"]):
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

    roots = [sets.find(i) for i in range(len(kinds))]
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(roots):
        members[r].append(i)

    person_of_root = _person_ids(members, kinds, values, previous)
    assignments = pd.DataFrame({
        "identifier_type": kinds,
        "identifier": values,
        "person_id": [person_of_root[r] for r in roots],
        "matched_by": [joined_by.get(i, ("singleton", 1.0))[0] for i in range(len(kinds))],
        "match_score": [joined_by.get(i, ("singleton", 1.0))[1] for i in range(len(kinds))],
    })
    sizes = Counter(len(m) for m in members.values())
    stats = {
        "persons": len(members),
        "identifiers": len(kinds),
        "largest_person": max(sizes) if sizes else 0,
        "edges_accepted": int(len(ordered) - len(refused)),
        "edges_refused": len(refused),
        "refused_by_reason": dict(Counter(r[-1] for r in refused)),
        "probabilistic_edges": int(edges["rule"].isin(PROBABILISTIC_RULES).sum()),
    }
    refused_df = pd.DataFrame(refused, columns=["left_type", "left_id", "right_type", "right_id", "rule", "weight", "why"])
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
    stats = {key: sum(r.stats[key] for r in results)
             for key in ("persons", "identifiers", "edges_accepted", "edges_refused", "probabilistic_edges")}
    return GraphResult(
        pd.concat([r.assignments for r in results], ignore_index=True),
        pd.concat([r.refused_edges for r in results if len(r.refused_edges)] or [results[0].refused_edges],
                  ignore_index=True),
        {**stats, "largest_person": max(r.stats["largest_person"] for r in results),
         "refused_by_reason": dict(refused_by_reason)}), dict(changes)

def _person_ids(members: dict[int, list[int]], kinds: list[str], values: list[str],
                previous: pd.DataFrame | None) -> dict[int, str]:
    """Keep previous ids where the majority of a person's identifiers already had one."""
    prev = {}
    if previous is not None and len(previous):
        prev = dict(zip(zip(previous["identifier_type"], previous["identifier"]), previous["person_id"]))
    claims = []  # (votes, earliest member, root, previous id)
    for root, idx in members.items():
        votes = Counter(prev[(kinds[i], values[i])] for i in idx if (kinds[i], values[i]) in prev)
        for pid, n in votes.items():
            claims.append((-n, min(idx), root, pid))
    out: dict[int, str] = {}
    taken: set[str] = set()
    for _, _, root, pid in sorted(claims):
        if root not in out and pid not in taken:
            out[root] = pid
            taken.add(pid)
    for root, idx in members.items():
        if root in out:
            continue
        # Members are in first-seen order, so idx[0] is the earliest-seen identifier.
        anchor = min(idx)
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
    if previous is None or not len(previous):
        return {"identifiers_moved": 0, "merges": 0, "splits": 0}
    both = assignments.merge(previous, on=["identifier_type", "identifier"], suffixes=("", "_prev"))
    return {
        "identifiers_moved": int((both["person_id"] != both["person_id_prev"]).sum()),
        "merges": int((both.groupby("person_id")["person_id_prev"].nunique() > 1).sum()),
        "splits": int((both.groupby("person_id_prev")["person_id"].nunique() > 1).sum()),
    }


def identifiers_per_person_histogram(sizes: pd.Series) -> pd.Series:
    """Persons per size bin (1, 2, 3, 4, 5-9, 10-19, 20-49, 50+ identifiers)."""
    bins = [0, 1, 2, 3, 4, 9, 19, 49, float("inf")]
    labels = ["1", "2", "3", "4", "5-9", "10-19", "20-49", "50+"]
    return pd.cut(sizes, bins=bins, labels=labels).value_counts().reindex(labels, fill_value=0)
