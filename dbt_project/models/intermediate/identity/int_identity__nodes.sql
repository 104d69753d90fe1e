-- One row per identifier, with when it was first seen. Emails and phones appear only as hashes.
with identifiers as (
    select * from {{ ref('int_identity__identifiers') }}
),

unpivoted as (
    {% for column in ['anonymous_id', 'user_id', 'customer_id', 'email_sha256', 'phone_sha256'] %}
    select '{{ column }}' as identifier_type, {{ column }} as identifier, first_observed_at, last_observed_at, observations
    from identifiers
    where {{ column }} is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select identifier_type, identifier, min(first_observed_at) as first_seen_at, max(last_observed_at) as last_seen_at,
       cast(sum(observations) as bigint) as observations
from unpivoted
group by identifier_type, identifier
