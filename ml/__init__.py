"""Tessera's models as plain Python: features in, fitted models and their evidence out.

No Dagster here; `orchestration/defs/ml` wraps these functions in assets.
"""
