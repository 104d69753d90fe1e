-- One row per erasure request, with the identifier normalised like the identity graph's keys.
with source as (
    select * from {{ source('privacy', 'erasure_requests') }}
),

normalised as (
    select
        requested_at,
        identifier_type,
        identifier,
        case
            when identifier_type = 'email' then lower(trim(identifier))
            else trim(identifier)
        end as identifier_normalised,
        loaded_at
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by identifier_type, identifier_normalised order by requested_at
        ) as request_rank
    from normalised
)

select
    md5({{ dbt.concat(["identifier_type", "'|'", "identifier_normalised"]) }}) as erasure_request_id,
    requested_at,
    identifier_type,
    identifier,
    identifier_normalised,
    loaded_at
from ranked
where request_rank = 1
