"""Recommendations on purchases with a planted truth: each person rebuys a staple of their own every
week or two, and buys the pair of an item some days after it (20 pairs, shared by everyone). Buy
again finds the staple and not the pair; co-occurrence finds the pair and not the staple; the hybrid
must find both, having learnt on earlier windows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.recommendations import History, HybridRecommender, metrics

START = pd.Timestamp("2026-01-01")
CUTOFF = START + pd.Timedelta(days=240)
END = CUTOFF + pd.Timedelta(days=30)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(7)
    rows = []
    for n in range(400):
        person, group = f"p{n}", f"g{n % 4}"
        staple = f"staple-{rng.integers(60)}"
        day = rng.uniform(0, 10)
        while day < 270:
            rows.append((person, staple, START + pd.Timedelta(days=day), group))
            day += rng.uniform(6, 14)
        day = rng.uniform(0, 40)
        while day < 270:
            k = rng.integers(20)
            rows.append((person, f"first-{k}", START + pd.Timedelta(days=day), group))
            rows.append((person, f"then-{k}", START + pd.Timedelta(days=day + rng.uniform(3, 20)), group))
            day += rng.uniform(30, 60)
    purchases = pd.DataFrame(rows, columns=["person_id", "item_id", "at", "group"])
    return purchases[purchases["at"] < END]


@pytest.fixture(scope="module")
def hybrid(planted):
    return HybridRecommender().fit(planted, CUTOFF)


def _split(purchases):
    history = History(purchases, CUTOFF)
    test = purchases[purchases["at"] >= CUTOFF]
    relevant: dict[str, set[int]] = {}
    for person, item in zip(test["person_id"], test["item_id"], strict=True):
        if person in history.persons and item in history.items:
            relevant.setdefault(person, set()).add(history.items.get_loc(item))
    return history, relevant, sorted(relevant)


def test_the_metrics_on_a_ranking_worked_by_hand():
    # a: hits at ranks 1 and 3 of 2 relevant; b: one hit at rank 2 of 1 relevant.
    figures = metrics({"a": [1, 9, 2], "b": [7, 3]}, {"a": {1, 2}, "b": {3}}, catalog=10, k=3)
    ndcg_a = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert figures["precision_at_3"] == round((2 / 3 + 1 / 3) / 2, 4)
    assert figures["recall_at_3"] == 1.0
    assert figures["map_at_3"] == round(((1 + 2 / 3) / 2 + 1 / 2) / 2, 4)
    assert figures["ndcg_at_3"] == round((ndcg_a + 1 / np.log2(3)) / 2, 4)
    assert figures["coverage"] == 0.5


def test_co_occurrence_recommends_the_pair_of_what_a_person_just_bought(planted):
    history, _, _ = _split(planted)
    # persons whose last first-k came before the cutoff and its pair after it
    firsts = planted[planted["item_id"].str.startswith("first-")].sort_values("at")
    last_first = firsts[firsts["at"] < CUTOFF].groupby("person_id")["item_id"].last()
    thens = planted[(planted["at"] >= CUTOFF) & planted["item_id"].str.startswith("then-")]
    waiting = {(p, i.replace("then-", "first-")) for p, i in zip(thens["person_id"], thens["item_id"], strict=True)}
    last_first = last_first[[(p, i) in waiting for p, i in last_first.items()]]
    assert len(last_first) > 30
    top = history.item_to_item(list(last_first.index), k=10)
    hits = [
        f"then-{item.split('-')[1]}" in {history.items[j] for j in top[person]} for person, item in last_first.items()
    ]
    assert np.mean(hits) > 0.9


def test_the_hybrid_finds_both_what_buy_again_and_co_occurrence_find_alone(planted, hybrid):
    history, relevant, persons = _split(planted)
    catalog = len(history.items)
    again = metrics(history.buy_again(persons), relevant, catalog)["ndcg_at_10"]
    pairs = metrics(history.item_to_item(persons), relevant, catalog)["ndcg_at_10"]
    popular = metrics(history.popularity(persons), relevant, catalog)["ndcg_at_10"]
    ranked = metrics(hybrid.recommend(history, persons), relevant, catalog)
    assert ranked["ndcg_at_10"] > 1.1 * max(again, pairs, popular), (ranked, again, pairs, popular)


def test_the_table_gives_each_person_ten_products_with_a_reason_and_the_cold_what_their_group_buys(planted, hybrid):
    history, _, _ = _split(planted)
    groups = {p: g for p, g in planted.groupby("person_id")["group"].first().items()} | {
        "newcomer": "g1",
        "stranger": None,
    }
    table = hybrid.table(history, groups, "tessera_recommender v1")
    ranks = table.groupby("person_id")["rank"].apply(list)
    assert len(ranks) == len(groups) and all(r == list(range(1, 11)) for r in ranks)
    staples = planted.groupby("person_id")["item_id"].agg(lambda s: s.value_counts().index[0])
    first = table[table["rank"] == 1].set_index("person_id")
    assert (first.loc[staples.index, "item_id"] == staples).mean() > 0.9  # the staple leads
    assert first.loc[staples.index, "reason"].str.match(r"bought before \(\d+ times\)").mean() > 0.9
    owned = planted[planted["at"] < CUTOFF].groupby("person_id")["item_id"].agg(set)
    bought_with = table[table["reason"].str.startswith("bought with ")]
    assert len(bought_with) and all(  # "bought with X": X is something they bought
        r.reason.removeprefix("bought with ") in owned[r.person_id] for r in bought_with.itertuples()
    )
    newcomer, stranger = table[table["person_id"] == "newcomer"], table[table["person_id"] == "stranger"]
    assert (newcomer["reason"] == "popular in g1").all() and (newcomer["model"] == "popularity").all()
    assert (stranger["reason"] == "popular now").all()

    # Before any champion: buy again for whoever bought, the same cold start for the others.
    fallback = HybridRecommender().table(history, groups, "none")
    assert set(fallback.loc[fallback["person_id"].isin(staples.index), "model"]) == {"buy again"}
    assert (fallback[fallback["person_id"] == "newcomer"]["reason"] == "popular in g1").all()


def test_content_similarity_recommends_what_is_described_like_their_last_purchase():
    at = pd.Timestamp("2026-10-01")
    rows = [
        (f"p{n}", f"{kind}-{i}", at, "g", text)
        for n in range(6)
        for kind, text in (("mug", "white ceramic coffee mug"), ("candle", "scented soy candle jar"))
        for i in range(5)
        if (n + i) % 2
    ]
    rows.append(("fan", "mug-0", at + pd.Timedelta(days=1), "g", "white ceramic coffee mug"))
    history = History(
        pd.DataFrame(rows, columns=["person_id", "item_id", "at", "group", "item_text"]), at + pd.Timedelta(days=2)
    )
    top = {history.items[i] for i in history.content_similarity(["fan"], k=4)["fan"]}
    assert top == {"mug-1", "mug-2", "mug-3", "mug-4"}


def test_the_hybrid_learns_when_no_one_has_a_rhythm_yet(planted):
    """Everyone bought each product once (no own_cycle anywhere): the feature is constant, not fatal."""
    once = planted.drop_duplicates(["person_id", "item_id"])
    model = HybridRecommender().fit(once, CUTOFF, windows=1)
    assert model.training["positives"] > 0 and model.last_frame["own_cycle"].eq(0).all()
