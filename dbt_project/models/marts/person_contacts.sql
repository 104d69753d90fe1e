{{ config(schema='pii', meta={'pii': true}) }}
-- The PII golden record: per person, the latest non-empty CRM value of each contact field wins.
with persons as (
    select identifier as customer_id, person_id
    from {{ ref('identity_map') }}
    where identifier_type = 'customer_id'
),

records as (
    select p.person_id, c.*
    from {{ ref('stg_crm__customers') }} c
    join persons p on p.customer_id = c.customer_id
),

{% set fields = ['email_normalised', 'phone_e164', 'first_name', 'last_name', 'birth_date', 'street', 'city', 'postcode'] %}
{% for f in fields %}
latest_{{ f }} as (
    select person_id, {{ f }}
    from (
        select person_id, {{ f }},
               row_number() over (partition by person_id order by updated_at desc, customer_id) as rn
        from records
        where {{ f }} is not null
    ) ranked
    where rn = 1
),
{% endfor %}

all_persons as (
    select distinct person_id from records
)

select
    a.person_id,
    {% for f in fields %}latest_{{ f }}.{{ f }}{% if f == 'email_normalised' %} as email{% elif f == 'phone_e164' %} as phone{% endif %}{% if not loop.last %},{% endif %}
    {% endfor %}
from all_persons a
{% for f in fields %}
left join latest_{{ f }} on latest_{{ f }}.person_id = a.person_id
{% endfor %}
