"""Pairwise precision, recall and F1 of identifiers clustered into persons, against a truth."""

from __future__ import annotations

import hashlib

import pandas as pd

TRUTH_TYPES = {"email": "email_sha256", "phone": "phone_sha256"}


def truth_as_identity_map(truth_identifiers: pd.DataFrame) -> pd.DataFrame:
    """The generator's identifiers.csv in identity_map form (emails and phones hashed); shared devices dropped."""
    t = truth_identifiers[truth_identifiers["shared_device"].astype(str) != "True"].copy()
    hashed = t["identifier_type"].isin(TRUTH_TYPES)
    t.loc[hashed, "identifier"] = [hashlib.sha256(v.encode()).hexdigest() for v in t.loc[hashed, "identifier"]]
    t["identifier_type"] = t["identifier_type"].replace(TRUTH_TYPES)
    return t.rename(columns={"person_key": "true_person"})[["identifier_type", "identifier", "true_person", "linkable"]]


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_scores(predicted: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """predicted: identifier_type, identifier, person_id; truth: identifier_type, identifier, true_person.

    Scored over identifiers present in both (an identifier the pipeline never saw cannot be paired).
    """
    both = predicted.merge(truth, on=["identifier_type", "identifier"], how="inner")
    true_pairs = _pairs(both.groupby("true_person").size())
    predicted_pairs = _pairs(both.groupby("person_id").size())
    correct = _pairs(both.groupby(["true_person", "person_id"]).size())
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "identifiers_scored": len(both),
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "correct_pairs": correct,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_persons": both["true_person"].nunique(),
        "predicted_persons": both["person_id"].nunique(),
    }
