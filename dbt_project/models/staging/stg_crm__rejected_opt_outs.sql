-- Opt-outs read from CRM records that could not load (no customer_id, no readable updated_at):
-- a record rejected whole still withholds the person it names (marts.profiles).
select
    {{ dbt.concat(["source_file", "':'", dbt.safe_cast("source_line", dbt.type_string())]) }} as rejected_record_id,
    customer_id,
    email_normalised,
    updated_at,
    marketing_opt_in,
    personalization_opt_in,
    reason_code,
    source_file,
    loaded_at
from {{ source('crm', 'crm_rejected_opt_outs') }}
