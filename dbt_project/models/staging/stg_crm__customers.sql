-- One row per CRM record version (customer_id, updated_at). Emails are normalised (trim,
-- lower); phones arrive already in E.164 from ingestion, which uses the phonenumbers library.
with source as (
    select * from {{ source('crm', 'crm_customers') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id, updated_at
            order by source_file desc, source_line desc
        ) as version_rank
    from source
)

select
    {{ dbt.concat(["customer_id", "'@'", dbt.safe_cast("updated_at", dbt.type_string())]) }} as customer_record_id,
    customer_id,
    email,
    lower(trim(email)) as email_normalised,
    {{ dbt.split_part("lower(trim(email))", "'@'", 2) }} as email_domain,
    phone,
    phone_e164,
    first_name,
    last_name,
    birth_date,
    street,
    city,
    postcode,
    country,
    signup_at,
    updated_at,
    marketing_opt_in,
    personalization_opt_in,
    source_file,
    loaded_at
from ranked
where version_rank = 1
