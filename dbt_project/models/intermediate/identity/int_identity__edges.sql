-- Deterministic identity evidence: two identifiers seen on one message or record. Each edge
-- keeps its rule, source, strength and first time seen. Probabilistic CRM matches are added by
-- the identity graph asset (Splink), which reads these edges.
with identifiers as (
    select * from {{ ref('int_identity__identifiers') }}
),

pairs as (
    {% set rules = [
        ('events', 'event_anonymous_user', 0.99, 'anonymous_id', 'anonymous_id', 'user_id', 'user_id'),
        ('events', 'identify_user_email', 0.95, 'user_id', 'user_id', 'email_sha256', 'email_sha256'),
        ('events', 'identify_user_phone', 0.90, 'user_id', 'user_id', 'phone_sha256', 'phone_sha256'),
        ('events', 'identify_anonymous_email', 0.90, 'anonymous_id', 'anonymous_id', 'email_sha256', 'email_sha256'),
        ('crm', 'crm_email', 1.0, 'customer_id', 'customer_id', 'email_sha256', 'email_sha256'),
        ('crm', 'crm_phone', 1.0, 'customer_id', 'customer_id', 'phone_sha256', 'phone_sha256'),
        ('orders', 'order_customer_email', 0.95, 'customer_id', 'customer_id', 'email_sha256', 'email_sha256'),
        ('order_events', 'order_event_user_customer', 0.97, 'user_id', 'user_id', 'customer_id', 'customer_id'),
        ('order_events', 'order_event_anonymous_customer', 0.97, 'anonymous_id', 'anonymous_id', 'customer_id', 'customer_id'),
        ('order_events', 'order_event_anonymous_email', 0.9, 'anonymous_id', 'anonymous_id', 'email_sha256', 'email_sha256'),
    ] %}
    {% for source, rule, weight, left_type, left_col, right_type, right_col in rules %}
    select
        '{{ left_type }}' as left_type, {{ left_col }} as left_id,
        '{{ right_type }}' as right_type, {{ right_col }} as right_id,
        '{{ rule }}' as rule, '{{ source }}' as source, {{ weight }} as weight,
        first_observed_at, observations
    from identifiers
    where source = '{{ source }}' and {{ left_col }} is not null and {{ right_col }} is not null
      {% if rule in ('identify_anonymous_email', 'order_event_anonymous_customer', 'order_event_anonymous_email') %}
      and user_id is null
      {% endif %}
      {% if rule == 'order_event_anonymous_email' %}and customer_id is null{% endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

-- A phone on CRM records with two different emails is a household's or an office's: it says
-- nothing about which of them a record is, so it links no customers (one fake number typed by
-- strangers, or a landline shared by a family, would otherwise join them, and detach their logins).
shared_phones as (
    select phone_sha256
    from identifiers
    where source = 'crm' and phone_sha256 is not null and email_sha256 is not null
    group by phone_sha256
    having count(distinct email_sha256) > 1
)

select left_type, left_id, right_type, right_id, rule, source, weight,
       min(first_observed_at) as first_seen_at, cast(sum(observations) as bigint) as evidence_count
from pairs
where not (rule = 'crm_phone' and right_id in (select phone_sha256 from shared_phones))
group by left_type, left_id, right_type, right_id, rule, source, weight
