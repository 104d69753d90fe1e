-- Identifier-to-person assignments from the identity graph asset.
select
    identifier_type,
    identifier,
    person_id,
    matched_by,
    match_score
from {{ source('identity_graph', 'identity_assignments') }}
