-- Champion propensity scores per person and model (written by the Dagster ML assets).
select
    {{ dbt.concat(["person_id", "'|'", "model_name"]) }} as person_model_key,
    person_id,
    model_name,
    score,
    top_features,
    model_version,
    as_of
from {{ source('ml', 'propensity_scores') }}
