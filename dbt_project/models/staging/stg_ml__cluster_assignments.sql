-- The champion clustering's assignment of each person (written by the Dagster ML assets).
select
    person_id,
    cluster_id,
    cluster_name,
    distance_to_centroid,
    model_version,
    as_of
from {{ source('ml', 'cluster_assignments') }}
