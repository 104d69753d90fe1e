-- One row per identifier seen: which person it belongs to and the rule or score that linked it.
-- Emails and phones appear only as SHA-256 of their normalised form.
select
    identifier_type,
    identifier,
    person_id,
    matched_by,
    match_score,
    {{ dbt.concat(["identifier_type", "':'", "identifier"]) }} as identifier_key
from {{ ref('stg_identity_graph__assignments') }}
