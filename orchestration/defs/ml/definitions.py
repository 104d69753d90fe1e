import dagster as dg

from orchestration.defs.ml.assets import clustering_model, clv_model, ml_assets, purchase_30d_model
from orchestration.defs.ml.recommendations import recommendation_assets, recommendation_model

defs = dg.Definitions(assets=[*ml_assets, *recommendation_assets])
# Retrained weekly (the train_models job), not daily: see TRAINING in assets.py.
training_assets = dg.AssetSelection.assets(clustering_model, purchase_30d_model, clv_model, recommendation_model)
