-- One row per CRM record version (customer_id, updated_at). Emails arrive normalised and phones
-- in E.164 from ingestion (email-validator, phonenumbers). Rows of one version (the same record
-- exported twice) merge field by field: the latest row with a value gives each field, since
-- ingestion nulls a bad optional field rather than dropping its record. Consent fails closed:
-- an opt-out in any row of the version holds.
{% set fields = ['email', 'email_normalised', 'phone', 'phone_e164', 'phone_valid', 'first_name', 'last_name',
                 'birth_date', 'street', 'city', 'postcode', 'country', 'signup_at'] %}
with source as (
    select * from {{ source('crm', 'crm_customers') }}
),

-- Rows of a version in file order: the last one has seen them all (Spark allows no explicit
-- frame beside row_number, so the default frame does the work).
merged as (
    select
        customer_id,
        updated_at,
        {% for f in fields %}
        {{ last_non_null(f) }} over (partition by customer_id, updated_at order by source_file, source_line) as {{ f }},
        {% endfor %}
        {% for f in ['marketing_opt_in', 'personalization_opt_in'] %}
        cast(min(cast({{ f }} as int)) over (partition by customer_id, updated_at) as boolean) as {{ f }},
        {% endfor %}
        source_file,
        loaded_at,
        row_number() over (partition by customer_id, updated_at order by source_file desc, source_line desc)
            as version_rank
    from source
)

select
    {{ dbt.concat(["customer_id", "'@'", dbt.safe_cast("updated_at", dbt.type_string())]) }} as customer_record_id,
    customer_id,
    {% for f in fields %}{{ f }},
    {% endfor %}{{ dbt.split_part("email_normalised", "'@'", 2) }} as email_domain,
    updated_at,
    marketing_opt_in,
    personalization_opt_in,
    source_file,
    loaded_at
from merged
where version_rank = 1
