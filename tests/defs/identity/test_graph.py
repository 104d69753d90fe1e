"""The identity graph on hand-built evidence with known answers."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from orchestration.defs.identity.graph import GraphLimits, resolve

T0 = dt.datetime(2026, 1, 1)


def _day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def _run(edges: list[tuple], extra_nodes: list[tuple] = (), previous=None, limits=GraphLimits()):
    """edges: (left_type, left_id, right_type, right_id, rule, weight, day)."""
    frame = pd.DataFrame(edges, columns=["left_type", "left_id", "right_type", "right_id", "rule", "weight", "day"])
    frame["first_seen_at"] = frame.pop("day").map(_day)
    seen = {}
    for lt, li, rt, ri, _, _, d in edges:
        for key in ((lt, li), (rt, ri)):
            seen[key] = min(seen.get(key, d), d)
    for kind, value, d in extra_nodes:
        seen[(kind, value)] = d
    nodes = pd.DataFrame(
        [(k, v, _day(d)) for (k, v), d in seen.items()], columns=["identifier_type", "identifier", "first_seen_at"]
    )
    result = resolve(nodes, frame, previous, limits)
    person = dict(
        zip(
            zip(result.assignments.identifier_type, result.assignments.identifier, strict=True),
            result.assignments.person_id,
            strict=True,
        )
    )
    return person, result


def test_two_devices_merge_once_the_person_logs_in_on_both():
    person, _ = _run(
        [
            ("anonymous_id", "phone", "user_id", "u1", "event_anonymous_user", 0.99, 3),
            ("anonymous_id", "laptop", "user_id", "u1", "event_anonymous_user", 0.99, 5),
        ],
        extra_nodes=[("anonymous_id", "never-logged-in", 1)],
    )
    assert person[("anonymous_id", "phone")] == person[("anonymous_id", "laptop")] == person[("user_id", "u1")]
    assert person[("anonymous_id", "never-logged-in")] != person[("user_id", "u1")]


def test_shared_tablet_keeps_two_registered_people_apart():
    person, result = _run(
        [
            ("anonymous_id", "a-phone", "user_id", "alice", "event_anonymous_user", 0.99, 1),
            ("anonymous_id", "b-phone", "user_id", "bob", "event_anonymous_user", 0.99, 1),
            ("anonymous_id", "tablet", "user_id", "alice", "event_anonymous_user", 0.99, 2),
            ("anonymous_id", "tablet", "user_id", "bob", "event_anonymous_user", 0.99, 4),
            ("customer_id", "C-alice", "email_sha256", "alice@x", "crm_email", 1.0, 0),
            ("user_id", "alice", "email_sha256", "alice@x", "identify_user_email", 0.95, 1),
            ("customer_id", "C-bob", "email_sha256", "bob@x", "crm_email", 1.0, 0),
            ("user_id", "bob", "email_sha256", "bob@x", "identify_user_email", 0.95, 1),
        ]
    )
    assert person[("user_id", "alice")] != person[("user_id", "bob")]
    # Documented: the tablet goes to the person whose equally strong evidence came first.
    assert person[("anonymous_id", "tablet")] == person[("user_id", "alice")]
    assert person[("anonymous_id", "b-phone")] == person[("customer_id", "C-bob")]
    assert list(result.refused_edges["why"]) == ["two user_ids"]


def test_crm_duplicates_merge_on_record_evidence_but_events_cannot_join_two_customers():
    person, result = _run(
        [
            ("customer_id", "C1", "email_sha256", "e1", "crm_email", 1.0, 0),
            ("customer_id", "C2", "email_sha256", "e1", "crm_email", 1.0, 1),  # same email, other case
            ("customer_id", "C3", "email_sha256", "e3", "crm_email", 1.0, 0),
            ("customer_id", "C4", "email_sha256", "e4", "crm_email", 1.0, 0),
            ("customer_id", "C3", "customer_id", "C4", "crm_probabilistic", 0.995, 0),  # Splink match
            ("anonymous_id", "dev", "email_sha256", "e1", "identify_anonymous_email", 0.9, 2),
            ("anonymous_id", "dev", "email_sha256", "e3", "identify_anonymous_email", 0.9, 3),
        ]
    )
    assert person[("customer_id", "C1")] == person[("customer_id", "C2")]
    assert person[("customer_id", "C3")] == person[("customer_id", "C4")]
    assert person[("customer_id", "C1")] != person[("customer_id", "C3")]
    assert set(result.refused_edges["why"]) == {"two customer clusters"}


def test_component_over_the_cap_is_split_on_its_weakest_edges():
    edges = [("user_id", "u", "anonymous_id", f"d{i}", "event_anonymous_user", 0.99, i) for i in range(5)]
    edges.append(("user_id", "u", "email_sha256", "weak", "identify_user_email", 0.5, 0))
    person, result = _run(edges, limits=GraphLimits(max_identifiers_per_person=6))
    assert person[("email_sha256", "weak")] != person[("user_id", "u")]
    assert all(person[("anonymous_id", f"d{i}")] == person[("user_id", "u")] for i in range(5))
    assert result.stats["largest_person"] == 6


def test_same_data_gives_same_ids_and_new_data_does_not_renumber():
    edges = [
        ("anonymous_id", "a1", "user_id", "u1", "event_anonymous_user", 0.99, 1),
        ("anonymous_id", "a2", "user_id", "u2", "event_anonymous_user", 0.99, 2),
    ]
    first, r1 = _run(edges)
    again, _ = _run(list(reversed(edges)))
    assert first == again
    # New evidence arrives: an earlier-seen device joins person 2, and a new person appears.
    previous = r1.assignments[["identifier_type", "identifier", "person_id"]]
    later, _ = _run(
        edges
        + [
            ("anonymous_id", "old-device", "user_id", "u2", "event_anonymous_user", 0.99, 0),
            ("anonymous_id", "a3", "user_id", "u3", "event_anonymous_user", 0.99, 9),
        ],
        previous=previous,
    )
    assert later[("user_id", "u1")] == first[("user_id", "u1")]
    assert later[("user_id", "u2")] == first[("user_id", "u2")] == later[("anonymous_id", "old-device")]
    assert later[("user_id", "u3")] not in {first[("user_id", "u1")], first[("user_id", "u2")]}


def test_merge_of_two_known_people_keeps_the_larger_ones_id():
    edges = [
        ("customer_id", "C1", "email_sha256", "e1", "crm_email", 1.0, 1),
        ("customer_id", "C1", "phone_sha256", "p1", "crm_phone", 1.0, 1),
        ("customer_id", "C2", "email_sha256", "e2", "crm_email", 1.0, 2),
    ]
    first, r1 = _run(edges)
    later, _ = _run(
        edges + [("customer_id", "C1", "customer_id", "C2", "crm_probabilistic", 0.999, 3)],
        previous=r1.assignments[["identifier_type", "identifier", "person_id"]],
    )
    assert later[("customer_id", "C2")] == later[("customer_id", "C1")] == first[("customer_id", "C1")]


def test_a_confident_false_crm_match_cannot_pull_a_customer_away_from_their_account():
    # Two registered people, each tied to their CRM record by an order event. Splink matches their
    # records (same name and address, birth dates years apart) with a probability above every
    # observed edge. Observed links attach first, so the match meets the one-user_id rule.
    person, result = _run(
        [
            ("customer_id", "C1", "customer_id", "C2", "crm_probabilistic", 0.999, 1),
            ("user_id", "u1", "customer_id", "C1", "order_event_user_customer", 0.97, 2),
            ("user_id", "u2", "customer_id", "C2", "order_event_user_customer", 0.97, 3),
        ]
    )
    assert person[("customer_id", "C1")] == person[("user_id", "u1")]
    assert person[("customer_id", "C2")] == person[("user_id", "u2")]
    assert person[("user_id", "u1")] != person[("user_id", "u2")]
    assert result.refused_edges["rule"].tolist() == ["crm_probabilistic"]


def test_merges_and_splits_against_the_previous_map_are_counted():
    from orchestration.defs.identity.graph import compare_with_previous, identifiers_per_person_histogram

    previous = pd.DataFrame(
        {"identifier_type": ["email"] * 5, "identifier": list("abcde"), "person_id": ["p1", "p1", "p2", "p3", "p3"]}
    )
    # a and c now one person (p1 and p2 merged); d and e apart (p3 split); f is new.
    current = pd.DataFrame(
        {
            "identifier_type": ["email"] * 6,
            "identifier": list("abcdef"),
            "person_id": ["p1", "p1", "p1", "p3", "p4", "p5"],
        }
    )
    assert compare_with_previous(current, previous) == {"identifiers_moved": 2, "merges": 1, "splits": 1}
    assert compare_with_previous(current, None) == {"identifiers_moved": 0, "merges": 0, "splits": 0}
    bins = identifiers_per_person_histogram(pd.Series([1, 1, 2, 7, 60]))
    assert bins.to_dict() == {"1": 2, "2": 1, "3": 0, "4": 0, "5-9": 1, "10-19": 0, "20-49": 0, "50+": 1}


def _components(pairs: list[tuple]) -> dict:
    """node -> component label, by union-find over undirected pairs (the test's own, for batching)."""
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return {node: find(node) for node in list(parent)}


def test_resolving_in_batches_of_components_equals_resolving_the_whole_graph():
    from orchestration.defs.identity.graph import compare_with_previous, resolve_in_batches

    edges = [
        # a shared tablet between two registered people
        ("anonymous_id", "a-phone", "user_id", "alice", "event_anonymous_user", 0.99, 1),
        ("anonymous_id", "tablet", "user_id", "alice", "event_anonymous_user", 0.99, 2),
        ("anonymous_id", "tablet", "user_id", "bob", "event_anonymous_user", 0.99, 4),
        # a person over the cap of 3 identifiers
        ("user_id", "u9", "anonymous_id", "d1", "event_anonymous_user", 0.99, 1),
        ("user_id", "u9", "anonymous_id", "d2", "event_anonymous_user", 0.98, 1),
        ("user_id", "u9", "anonymous_id", "d3", "event_anonymous_user", 0.97, 1),
        # x and y were one person last time; their link is gone, so they are two components now
        ("anonymous_id", "x", "user_id", "ux", "event_anonymous_user", 0.99, 1),
        ("anonymous_id", "y", "user_id", "uy", "event_anonymous_user", 0.99, 2),
    ]
    previous = pd.DataFrame(
        {
            "identifier_type": ["anonymous_id", "anonymous_id", "user_id"],
            "identifier": ["x", "y", "alice"],
            "person_id": ["p_old", "p_old", "p_alice"],
        }
    )
    limits = GraphLimits(max_identifiers_per_person=3)
    whole, expected = _run(edges, previous=previous, limits=limits)
    frame = pd.DataFrame(edges, columns=["left_type", "left_id", "right_type", "right_id", "rule", "weight", "day"])
    frame["first_seen_at"] = frame.pop("day").map(_day)
    nodes = expected.assignments[["identifier_type", "identifier"]].assign(first_seen_at=T0)
    nodes["first_seen_at"] = [
        min(
            frame.loc[
                ((frame.left_type == t) & (frame.left_id == v)) | ((frame.right_type == t) & (frame.right_id == v)),
                "first_seen_at",
            ]
        )
        for t, v in zip(nodes.identifier_type, nodes.identifier, strict=True)
    ]

    def batches(link_previous: bool):
        pairs = [((a, b), (c, d)) for a, b, c, d, *_ in edges]
        if link_previous:  # as spark_components does: a previous person holds its identifiers together
            pairs += [((t, v), ("previous_person", p)) for t, v, p in previous.itertuples(index=False)]
        component = _components(pairs)
        key = lambda t, v: component[(t, v)]  # noqa: E731
        for label in sorted(set(component.values()), key=str):
            in_batch = lambda t, v, label=label: key(t, v) == label  # noqa: E731
            batch_nodes = nodes[[in_batch(t, v) for t, v in zip(nodes.identifier_type, nodes.identifier, strict=True)]]
            if not len(batch_nodes):
                continue
            yield (
                batch_nodes,
                frame[[in_batch(t, v) for t, v in zip(frame.left_type, frame.left_id, strict=True)]],
                previous[
                    [
                        in_batch(t, v) and (t, v) in component
                        for t, v in zip(previous.identifier_type, previous.identifier, strict=True)
                    ]
                ],
            )

    batched, changes = resolve_in_batches(batches(link_previous=True), limits)
    assert len(list(batches(link_previous=True))) == 3  # the tablet, the capped person, x and y
    key = ["identifier_type", "identifier"]
    pd.testing.assert_frame_equal(
        batched.assignments.sort_values(key).reset_index(drop=True),
        expected.assignments.sort_values(key).reset_index(drop=True),
    )
    assert batched.stats == expected.stats
    assert (
        changes
        == compare_with_previous(expected.assignments, previous)
        == {"identifiers_moved": 1, "merges": 0, "splits": 1}
    )
    assert (
        sorted(batched.refused_edges["why"])
        == sorted(expected.refused_edges["why"])
        == ["more than 3 identifiers", "two user_ids"]
    )
    assert whole[("anonymous_id", "x")] == "p_old" != whole[("anonymous_id", "y")]
    # Batched without the previous persons, x's person and y's person would both keep p_old.
    unlinked = resolve_in_batches(batches(link_previous=False), limits)[0].assignments
    assert (unlinked.loc[unlinked.identifier.isin(["x", "y"]), "person_id"] == "p_old").all()
