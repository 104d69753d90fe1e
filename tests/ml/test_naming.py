import pandas as pd

from ml import naming as n
from ml.naming import cluster_name, name_clusters


def test_names_follow_the_centroid_profile():
    assert cluster_name({n.MONETARY: 1.2, n.FREQUENCY: 1.0}) == "High-Value Frequent Buyers"
    assert cluster_name({n.VIDEO: 0.9, n.MOBILE: 0.8}) == "Mobile Content Readers"
    assert cluster_name({n.RECENCY: 1.5, n.FREQUENCY: 0.3, n.MONETARY: 0.7}) == "High-Value Lapsed Customers"
    assert cluster_name({n.RECENCY: 1.5, n.FREQUENCY: -0.6}) == "Dormant Visitors"
    assert cluster_name({n.TENURE: -1.4, n.TREND: 2.0}) == "Newcomers"
    assert cluster_name({n.CART_ABANDONMENT: 1.1, n.MOBILE: -0.7}) == "Desktop Cart Abandoners"
    assert cluster_name({n.PRODUCT_VIEWS: 0.8, n.TREND: 0.9}) == "Rising Browsers"
    assert cluster_name({}) == "Casual Visitors"


def test_names_come_from_profiles_not_cluster_order():
    profiles = pd.DataFrame([{n.VIDEO: 1.0}, {n.MONETARY: 1.0, n.FREQUENCY: 1.0}]).fillna(0.0)
    swapped = profiles.iloc[::-1].reset_index(drop=True)
    assert name_clusters(profiles) == {0: "Content Readers", 1: "High-Value Frequent Buyers"}
    assert name_clusters(swapped) == {0: "High-Value Frequent Buyers", 1: "Content Readers"}


def test_equal_names_are_told_apart_by_their_most_distinctive_trait():
    profiles = pd.DataFrame(
        [{n.VIDEO: 1.0, "searches_log1p_capped": 0.2}, {n.VIDEO: 0.6, "searches_log1p_capped": -1.5}]
    )
    names = name_clusters(profiles)
    assert names[0] == "Content Readers (high video completion share)"
    assert names[1] == "Content Readers (low searches)"
