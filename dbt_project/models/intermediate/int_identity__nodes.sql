-- One row per identifier, with when it was first seen. Emails and phones appear only as hashes.
with identifiers as (
    select * from {{ ref('int_identity__identifiers') }}
),

unpivoted as (
    select 'anonymous_id' as identifier_type, anonymous_id as identifier, observed_at from identifiers where anonymous_id is not null
    union all
    select 'user_id', user_id, observed_at from identifiers where user_id is not null
    union all
    select 'customer_id', customer_id, observed_at from identifiers where customer_id is not null
    union all
    select 'email_sha256', email_sha256, observed_at from identifiers where email_sha256 is not null
    union all
    select 'phone_sha256', phone_sha256, observed_at from identifiers where phone_sha256 is not null
)

select identifier_type, identifier, min(observed_at) as first_seen_at, max(observed_at) as last_seen_at,
       count(*) as observations
from unpivoted
group by identifier_type, identifier
