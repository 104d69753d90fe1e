-- One row per erasure request, by hash only: the identifier stays in raw until the erasure step
-- has processed the request (then it is cleared), and never reaches a model.
with source as (
    select * from {{ source('privacy', 'erasure_requests') }}
),

normalised as (
    select
        requested_at,
        identifier_type,
        identifier_sha256,
        loaded_at
    from source
),

ranked as (
    select
        *,
        row_number() over (partition by identifier_type, identifier_sha256 order by requested_at) as request_rank
    from normalised
)

select
    md5({{ dbt.concat(["identifier_type", "'|'", "identifier_sha256"]) }}) as erasure_request_id,
    requested_at,
    identifier_type,
    identifier_sha256,
    loaded_at
from ranked
where request_rank = 1
