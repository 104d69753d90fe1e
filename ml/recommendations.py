"""Recommendations from purchases: the baselines, item-to-item co-occurrence, a factorisation, and a
hybrid that learns how to weigh them.

Every method reads a `History`: the purchases before a moment, as occasions (a person buying an item
on a day counts once, however many lines or units). The hybrid is a two-stage recommender:
1. candidates for each person: their own items, the items bought with them (co-occurrence), the
   factorisation's nearest items, and what is popular now and in their segment;
2. a gradient-boosted classifier ranks the candidates by the chance that the person buys the item
   within `horizon_days`. It learns on the history one horizon earlier, labelled by what was bought
   in the horizons that followed (three by default), so it never sees the period it is judged on.
benchmarks/recommendations.py measures every method against the baselines on UCI Online Retail.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer

K = 10
HALF_LIFE_DAYS = 90.0  # how fast an occasion's weight halves in the decayed counts
RECENT_HALF_LIFE_DAYS = 7.0  # the same for "what they bought lately" (the pairs of a recent purchase)
RECENT_DAYS = 30  # "popular now"
CHUNK = 2048  # persons scored at a time (dense person x item blocks)
MAX_NEGATIVES = 1_000_000  # candidates not bought the ranker learns on, at most: a sample beyond, weighted back
FEATURES = [
    "own_occasions",
    "own_decayed",
    "own_days_since",
    "own_share",
    "own_cycle",
    "person_occasions",
    "person_items",
    "person_days_since",
    "cooccurrence",
    "cooccurrence_max",
    "cooccurrence_recent",
    "factorisation",
    "item_buyers",
    "item_recent_buyers",
    "item_group_share",
    "item_repeat_rate",
    "item_days_since_first",
]


class History:
    """Purchases strictly before `until`, indexed for scoring. `purchases` has person_id, item_id,
    at, and optionally group (the person's segment or context, for popularity within it)."""

    def __init__(self, purchases: pd.DataFrame, until: pd.Timestamp, components: int = 48, seed: int = 0):
        self.until = pd.Timestamp(until)
        p = purchases[purchases["at"] < self.until]
        occasions = (
            p.assign(day=p["at"].dt.floor("D"))
            .groupby(["person_id", "item_id", "day"], as_index=False, observed=True)
            .size()[["person_id", "item_id", "day"]]
        )
        self.persons = pd.Index(sorted(occasions["person_id"].unique()))
        self.items = pd.Index(sorted(occasions["item_id"].unique()))
        if len(self.persons) < 2 or len(self.items) < 2:
            raise NotEnoughPurchasesError(
                f"{len(self.persons)} persons bought {len(self.items)} products before {self.until.date()}: too few to learn from."
            )
        rows = self.persons.get_indexer(occasions["person_id"])
        cols = self.items.get_indexer(occasions["item_id"])
        age_days = ((self.until - occasions["day"]).dt.total_seconds() / 86400).to_numpy()
        shape = (len(self.persons), len(self.items))
        self.counts = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
        self.decayed = sparse.csr_matrix((0.5 ** (age_days / HALF_LIFE_DAYS), (rows, cols)), shape=shape)
        self.lately = sparse.csr_matrix((0.5 ** (age_days / RECENT_HALF_LIFE_DAYS), (rows, cols)), shape=shape)
        span = occasions.groupby(["person_id", "item_id"], observed=True)["day"].agg(["min", "max", "size"])
        last = span["max"]
        # A person's own rhythm for an item: the mean days between their occasions (none below two).
        gap = ((span["max"] - span["min"]).dt.total_seconds() / 86400 / (span["size"] - 1)).where(span["size"] > 1)
        self.cycle = sparse.csr_matrix(
            (
                gap.fillna(0).to_numpy() + 1,  # +1: 0 means "no rhythm"
                (
                    self.persons.get_indexer(gap.index.get_level_values(0)),
                    self.items.get_indexer(gap.index.get_level_values(1)),
                ),
            ),
            shape=shape,
        )
        self.last_days = sparse.csr_matrix(
            (
                ((self.until - last).dt.total_seconds() / 86400).to_numpy() + 1,  # +1: 0 means "never"
                (
                    self.persons.get_indexer(last.index.get_level_values(0)),
                    self.items.get_indexer(last.index.get_level_values(1)),
                ),
            ),
            shape=shape,
        )
        bought = (self.counts > 0).astype(np.float64)
        self.item_buyers = np.asarray(bought.sum(axis=0)).ravel()
        recent = occasions[occasions["day"] >= self.until - pd.Timedelta(days=RECENT_DAYS)]
        self.item_recent = np.bincount(
            self.items.get_indexer(recent.drop_duplicates(["person_id", "item_id"])["item_id"]),
            minlength=len(self.items),
        ).astype(np.float64)
        self.item_repeat = np.asarray((self.counts > 1).sum(axis=0)).ravel() / np.maximum(self.item_buyers, 1)
        first = occasions.groupby("item_id", observed=True)["day"].min()
        self.item_days_since_first = ((self.until - first.reindex(self.items)).dt.total_seconds() / 86400).to_numpy()
        self.person_occasions = np.asarray(self.counts.sum(axis=1)).ravel()
        self.person_items = np.diff(bought.indptr).astype(np.float64)
        person_last = occasions.groupby("person_id", observed=True)["day"].max().reindex(self.persons)
        self.person_days_since = ((self.until - person_last).dt.total_seconds() / 86400).to_numpy()

        # Co-occurrence: cosine of the items' buyer vectors, an item not its own neighbour.
        norms = np.sqrt(np.maximum(self.item_buyers, 1))
        # C order: every product with it reads it row by row (scipy copies a Fortran-ordered operand)
        co = np.ascontiguousarray((bought.T @ bought).toarray()) / norms[:, None] / norms[None, :]
        np.fill_diagonal(co, 0.0)
        self.similar = co
        # Content: the cosine of the products' TF-IDF over their text (name, category, description),
        # when the purchases carry an `item_text` column; None without one. A method of its own: as a
        # feature of the hybrid it added nothing on Online Retail (benchmarks/recommendations.py).
        self.content = None
        if "item_text" in p.columns:
            text = p.dropna(subset=["item_text"]).groupby("item_id", observed=True)["item_text"].last()
            text = text.reindex(self.items).fillna("")
            if (text != "").sum() >= 2:
                vectors = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit_transform(text)
                self.content = np.ascontiguousarray((vectors @ vectors.T).toarray())
                np.fill_diagonal(self.content, 0.0)
        # The factorisation: truncated SVD of the occasions, log-damped and idf-weighted.
        weighted = self.counts.copy()
        weighted.data = np.log1p(weighted.data)
        weighted = weighted @ sparse.diags(np.log(len(self.persons) / np.maximum(self.item_buyers, 1)) + 1)
        n = max(1, min(components, min(shape) - 1))
        svd = TruncatedSVD(n_components=n, random_state=seed)
        self.person_factors = svd.fit_transform(weighted)
        self.item_factors = svd.components_.T

        self.popular = np.argsort(-self.item_buyers, kind="stable")
        self.popular_now = np.argsort(-(self.item_recent + self.item_buyers / 1e6), kind="stable")
        self.group_of: dict[str, str] = {}
        self.group_share: dict[str, np.ndarray] = {}
        self._group_top: dict[str | None, set[int]] = {}
        self._group_order: dict[str, np.ndarray] = {}
        self.person_group = np.full(len(self.persons), -1)  # each person's row of group_shares, -1 for none
        if "group" in purchases.columns:
            groups = p.drop_duplicates("person_id", keep="last").set_index("person_id")["group"].astype(str)
            self.group_of = groups.to_dict()
            for name, members in groups.groupby(groups).groups.items():
                idx = self.persons.get_indexer(members)
                idx = idx[idx >= 0]
                share = np.asarray(bought[idx].sum(axis=0)).ravel() / max(len(idx), 1)
                self.group_share[name] = share
                self.person_group[idx] = len(self.group_share) - 1
        # a row per group, and one of zeros last: the row of person_group -1
        self.group_shares = np.vstack([*self.group_share.values(), np.zeros(len(self.items))])
        # The pattern of (person, item) pairs every per-pair matrix above shares, as sorted keys.
        self._pair_keys = np.repeat(np.arange(len(self.persons)), np.diff(self.counts.indptr)) * len(self.items)
        self._pair_keys += self.counts.indices

    def _pairs(self, matrix: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """matrix[rows[i], cols[i]] for a matrix with the persons' pair pattern (0 off it), vectorised."""
        keys = rows * len(self.items) + cols
        at = np.minimum(np.searchsorted(self._pair_keys, keys), len(self._pair_keys) - 1)
        return np.where(self._pair_keys[at] == keys, matrix.data[at], 0.0)

    def group_order(self, group: str) -> np.ndarray:
        """The items of `group`, most bought there first."""
        if group not in self._group_order:
            self._group_order[group] = np.argsort(-self.group_share[group], kind="stable")
        return self._group_order[group]

    def group_top(self, group: str | None, n: int = 20) -> set[int]:
        """The n items most bought in `group` (bought by someone there)."""
        if group not in self._group_top:
            share = self.group_share.get(group)
            self._group_top[group] = (
                {int(i) for i in self.group_order(group)[:n] if share[i] > 0} if share is not None else set()
            )
        return self._group_top[group]

    # -- the single methods (baselines included) -----------------------------------------------

    def popularity(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        return {p: list(self.popular[:k]) for p in persons}

    def group_popularity(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        out = {}
        for p in persons:
            group = self.group_of.get(p, "")
            out[p] = list(self.group_order(group)[:k]) if group in self.group_share else list(self.popular[:k])
        return out

    def buy_again(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        """The person's own items, most often bought first, then the more recent; popular items after."""
        rows = self.persons.get_indexer(persons)
        own = self.counts[rows]
        local = np.repeat(np.arange(len(rows)), np.diff(own.indptr))
        last = self._pairs(self.last_days, rows[local], own.indices)
        order = np.lexsort((last, -own.data, local))
        items, starts = own.indices[order], np.searchsorted(local[order], np.arange(len(rows) + 1))
        return {
            p: self._pad(list(items[starts[n] : min(starts[n + 1], starts[n] + k)]), k) for n, p in enumerate(persons)
        }

    def item_to_item(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        """The items bought with what the person bought lately (RECENT_HALF_LIFE_DAYS)."""
        return self._top(persons, lambda rows: self.lately[rows] @ self.similar, k)

    def content_similarity(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        """The products whose text is closest to what the person bought lately (needs `item_text`)."""
        if self.content is None:
            return self.popularity(persons, k)
        return self._top(persons, lambda rows: self.lately[rows] @ self.content, k)

    def factorisation(self, persons: list[str], k: int = K) -> dict[str, list[int]]:
        return self._top(persons, lambda rows: self.person_factors[rows] @ self.item_factors.T, k)

    def _top(self, persons: list[str], scores, k: int) -> dict[str, list[int]]:
        out = {}
        idx = self.persons.get_indexer(persons)
        for start in range(0, len(idx), CHUNK):
            block = np.asarray(scores(idx[start : start + CHUNK]))
            top = np.argsort(-block, axis=1, kind="stable")[:, :k]
            out.update({persons[start + n]: list(row) for n, row in enumerate(top)})
        return out

    def _pad(self, items: list[int], k: int) -> list[int]:
        seen = set(items)
        return items + [j for j in self.popular[: 2 * k] if j not in seen][: k - len(items)]

    # -- the hybrid's candidates and features ----------------------------------------------------

    def candidates(self, persons: list[str], per_source: int = 50) -> pd.DataFrame:
        """One row per (person, candidate item) with FEATURES; persons outside the history get none."""
        idx = self.persons.get_indexer(persons)
        idx = idx[idx >= 0]
        n_items = len(self.items)
        # each group's 20 most bought, a row per group (and a spare row, so that no groups still stack)
        group_picks = np.vstack([self.group_order(g)[:20] for g in self.group_share] + [self.popular_now[:20]])
        frames = []
        for start in range(0, len(idx), CHUNK):
            rows = idx[start : start + CHUNK]
            m = np.arange(len(rows))
            own = self.counts[rows]
            own_local = np.repeat(m, np.diff(own.indptr))
            co = np.asarray(self.decayed[rows] @ self.similar)
            co_recent = np.asarray(self.lately[rows] @ self.similar)
            fac = self.person_factors[rows] @ self.item_factors.T
            # each source's picks as (local row, item) keys: the person's own items, the best of
            # co-occurrence, factorisation and recent co-occurrence, what is popular now and in their group
            groups = self.person_group[rows]
            picks = [
                own_local * n_items + own.indices,
                _best(co, per_source),
                _best(fac, per_source // 2),
                _best(co_recent, per_source // 2),
                (m[:, None] * n_items + self.popular_now[None, :20]).ravel(),
                (m[groups >= 0, None] * n_items + group_picks[groups[groups >= 0]]).ravel(),
            ]
            keys = np.unique(np.concatenate(picks))
            local, cols = keys // n_items, keys % n_items
            person_rows = rows[local]
            own_counts = self._pairs(self.counts, person_rows, cols)
            last = self._pairs(self.last_days, person_rows, cols)
            cycle = self._pairs(self.cycle, person_rows, cols)
            # the strongest single link to one of the person's items, and that item
            co_max, bought_with = np.zeros(len(local)), np.full(len(local), -1)
            bounds = np.searchsorted(local, np.arange(len(rows) + 1))
            for n in m:
                mine = own.indices[own.indptr[n] : own.indptr[n + 1]]
                if len(mine) and bounds[n + 1] > bounds[n]:
                    sel = slice(bounds[n], bounds[n + 1])
                    links = self.similar[np.ix_(cols[sel], mine)]
                    co_max[sel], bought_with[sel] = links.max(axis=1), mine[links.argmax(axis=1)]
            group_rows = self.person_group[person_rows]
            frames.append(
                pd.DataFrame(
                    {
                        "person_id": self.persons[person_rows],
                        "item": cols,
                        "own_occasions": own_counts,
                        "own_decayed": self._pairs(self.decayed, person_rows, cols),
                        "own_days_since": np.where(last > 0, last - 1, np.nan),
                        "own_share": own_counts / np.maximum(self.person_occasions[person_rows], 1),
                        # where they are in their rhythm for the item: 1 means "about due"
                        "own_cycle": np.where((cycle > 1) & (last > 0), (last - 1) / np.maximum(cycle - 1, 1), np.nan),
                        "person_occasions": self.person_occasions[person_rows],
                        "person_items": self.person_items[person_rows],
                        "person_days_since": self.person_days_since[person_rows],
                        "cooccurrence": co[local, cols],
                        "cooccurrence_max": co_max,
                        "cooccurrence_recent": co_recent[local, cols],
                        "factorisation": fac[local, cols],
                        "item_buyers": self.item_buyers[cols],
                        "item_recent_buyers": self.item_recent[cols],
                        "item_group_share": np.where(group_rows >= 0, self.group_shares[group_rows, cols], np.nan),
                        "item_repeat_rate": self.item_repeat[cols],
                        "item_days_since_first": self.item_days_since_first[cols],
                        "bought_with": bought_with,  # not a feature: the reason's "bought with X"
                    }
                )
            )
        return (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["person_id", "item", *FEATURES])
        )


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best items of each row of `scores`, as (row, item) keys."""
    if k >= scores.shape[1]:
        top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    else:  # the k best in no order (ties broken arbitrarily, as a sort would): the candidates are a set
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (np.arange(len(scores))[:, None] * scores.shape[1] + top).ravel()


class HybridRecommender:
    """The learned blend. `fit` learns on the history one horizon before `until`; `recommend` ranks
    the candidates of the history up to `until`."""

    def __init__(self, horizon_days: int = 30, seed: int = 0):
        self.horizon_days, self.seed = horizon_days, seed
        self.model: HistGradientBoostingClassifier | None = None

    def fit(self, purchases: pd.DataFrame, until: pd.Timestamp, windows: int = 3) -> HybridRecommender:
        """Learn on `windows` horizons before `until`, each labelled by the purchases that followed it."""
        frames, labels = [], []
        for w in range(1, windows + 1):
            start = pd.Timestamp(until) - pd.Timedelta(days=w * self.horizon_days)
            end = start + pd.Timedelta(days=self.horizon_days)
            try:
                past = History(purchases, start, seed=self.seed)
            except NotEnoughPurchasesError:
                if w == 1:
                    raise
                break  # the history is shorter than the windows: learn on those it has
            window = purchases[(purchases["at"] >= start) & (purchases["at"] < end)]
            frame = past.candidates(sorted(set(window["person_id"]) & set(past.persons)))
            bought = set(zip(window["person_id"], past.items.get_indexer(window["item_id"]), strict=True))
            labels.append(np.array([(p, i) in bought for p, i in zip(frame["person_id"], frame["item"], strict=True)]))
            frames.append(frame)
        frame, label = pd.concat(frames, ignore_index=True), np.concatenate(labels)
        if label.all() or not label.any():
            raise NotEnoughPurchasesError(
                f"The {len(frames)} training window(s) before {pd.Timestamp(until).date()} hold no purchase of a "
                "candidate product: nothing to learn from."
            )
        # Every positive and at most MAX_NEGATIVES negatives, weighted back, so that the fit's cost stops growing
        # with the population (docs/models.md: at 100k persons NDCG@10 rose a little, on Online Retail it is all).
        share = min(1.0, MAX_NEGATIVES / max(len(label) - label.sum(), 1))
        keep = label | (np.random.default_rng(self.seed).random(len(label)) < share)
        features = frame.loc[keep, FEATURES].astype("float64")
        # A feature no candidate has (no one bought anything twice, say) stops the binning: a constant does not.
        features = features.fillna({c: 0.0 for c in FEATURES if features[c].isna().all()})
        self.model = HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=31, early_stopping=True, random_state=self.seed
        ).fit(features, label[keep], sample_weight=np.where(label[keep], 1.0, 1 / share))
        self.training = {"windows": len(frames), "candidates": len(frame), "positives": int(label.sum())}
        self.last_frame = features  # what the model reads, for MLflow's synthetic input example
        return self

    def scores(self, history: History, persons: list[str]) -> pd.DataFrame:
        frame = history.candidates(persons)
        frame["score"] = self.model.predict_proba(frame[FEATURES].astype("float64"))[:, 1] if len(frame) else []
        return frame

    def recommend(self, history: History, persons: list[str], k: int = K) -> dict[str, list[int]]:
        frame = self.scores(history, persons).sort_values(["person_id", "score"], ascending=[True, False])
        return {p: list(g["item"].head(k)) for p, g in frame.groupby("person_id", sort=False)}

    def table(self, history: History, groups: dict[str, str | None], model: str, k: int = K) -> pd.DataFrame:
        """Ten items for every person of `groups` (person -> their segment or context, or None), with
        a reason each: a person with purchases gets the hybrid's ranking; one without (cold start)
        what is popular in their group, or what is popular now."""
        known = [p for p in groups if p in history.persons]
        if self.model is None:  # no champion yet: the persons with purchases get buy again
            top = _buy_again_table(history, known, k)
        else:
            scored = self.scores(history, known) if known else pd.DataFrame(columns=["person_id", "item", "score"])
            top = (
                scored.sort_values(["person_id", "score", "item"], ascending=[True, False, True])
                .groupby("person_id", sort=False)
                .head(k)
            )
            top = top.assign(rank=top.groupby("person_id", sort=False).cumcount() + 1, model=model)
            top["reason"] = [
                _reason(history, r.own_occasions, r.bought_with, r.cooccurrence_max, groups.get(r.person_id), r.item)
                for r in top.itertuples()
            ]
        cold, per_group = [], {}
        for person in sorted(set(groups) - set(known)):
            group = groups[person]
            if group not in per_group:
                share = history.group_share.get(group)
                if share is not None and share.max() > 0:
                    items = history.group_order(group)[:k]
                    per_group[group] = [(n + 1, i, float(share[i]), f"popular in {group}") for n, i in enumerate(items)]
                else:
                    recent = history.item_recent / max(len(history.persons), 1)
                    items = history.popular_now[:k]
                    per_group[group] = [(n + 1, i, float(recent[i]), "popular now") for n, i in enumerate(items)]
            cold += [(person, *row) for row in per_group[group]]
        cold_frame = pd.DataFrame(cold, columns=["person_id", "rank", "item", "score", "reason"]).assign(
            model="popularity"
        )
        out = pd.concat([top[["person_id", "rank", "item", "score", "model", "reason"]], cold_frame], ignore_index=True)
        out.insert(2, "item_id", history.items[out["item"].to_numpy()] if len(out) else pd.Series(dtype="string"))
        return out.drop(columns="item").astype({"rank": "int64", "score": "float64"})


def _buy_again_table(history: History, persons: list[str], k: int) -> pd.DataFrame:
    """The buy-again baseline as recommendations: score is the item's share of the person's occasions."""
    rows = []
    for person, items in history.buy_again(persons, k).items():
        i = history.persons.get_loc(person)
        total = max(history.person_occasions[i], 1)
        for rank, item in enumerate(items, 1):
            own = history.counts[i, item]
            reason = _reason(history, own, -1, 0.0, None, item)
            rows.append((person, rank, item, own / total, "buy again", reason))
    return pd.DataFrame(rows, columns=["person_id", "rank", "item", "score", "model", "reason"])


def _reason(history: History, own: float, bought_with: int, link: float, group: str | None, item: int) -> str:
    if own >= 1:
        return "bought before" + (f" ({int(own)} times)" if own > 1 else "")
    if bought_with >= 0 and link > 0:
        return f"bought with {history.items[bought_with]}"
    if item in history.group_top(group):
        return f"popular in {group}"
    return "popular now"


class NotEnoughPurchasesError(ValueError):
    """Too few purchases with a product to learn or judge recommendations."""


BASELINES = {
    "global popularity": "popularity",
    "popularity in the segment": "group_popularity",
    "buy again": "buy_again",
}


def holdout(purchases: pd.DataFrame, until: pd.Timestamp, horizon_days: int = 30):
    """(History up to `until` - horizon, what each person of it bought in the horizon after, as item
    indices of that history): the time split every evaluation uses."""
    cutoff = pd.Timestamp(until) - pd.Timedelta(days=horizon_days)
    history = History(purchases, cutoff)
    window = purchases[(purchases["at"] >= cutoff) & (purchases["at"] < until)]
    relevant: dict[str, set[int]] = {}
    for person, item in zip(window["person_id"], window["item_id"], strict=True):
        if person in history.persons:  # an item new in the window can be bought, never recommended
            relevant.setdefault(person, set()).add(history.items.get_loc(item) if item in history.items else -1)
    return history, relevant


def evaluate(history: History, relevant: dict[str, set[int]], hybrid: HybridRecommender | None = None) -> dict:
    """Method -> metrics on the split, the baselines always, the hybrid when given."""
    persons = sorted(relevant)
    table = {
        name: metrics(getattr(history, method)(persons), relevant, len(history.items))
        for name, method in BASELINES.items()
    }
    if hybrid is not None:
        table["hybrid"] = metrics(hybrid.recommend(history, persons), relevant, len(history.items))
    return table


def metrics(recommended: dict[str, list], relevant: dict[str, set], catalog: int, k: int = K) -> dict[str, float]:
    """Precision, recall, MAP and NDCG at k (binary relevance) and catalogue coverage."""
    precision = recall = ap = ndcg = 0.0
    for person, items in recommended.items():
        truth = relevant[person]
        hits = [1 if item in truth else 0 for item in items[:k]]
        precision += sum(hits) / k
        recall += sum(hits) / len(truth)
        found, total = 0, 0.0
        for rank, hit in enumerate(hits, 1):
            if hit:
                found += 1
                total += found / rank
        ap += total / min(len(truth), k)
        dcg = sum(hit / math.log2(rank + 1) for rank, hit in enumerate(hits, 1))
        ndcg += dcg / sum(1 / math.log2(rank + 1) for rank in range(1, min(len(truth), k) + 1))
    n = max(len(recommended), 1)
    shown = {item for items in recommended.values() for item in items[:k]}
    return {
        f"precision_at_{k}": round(precision / n, 4),
        f"recall_at_{k}": round(recall / n, 4),
        f"map_at_{k}": round(ap / n, 4),
        f"ndcg_at_{k}": round(ndcg / n, 4),
        "coverage": round(len(shown) / max(catalog, 1), 4),
    }
