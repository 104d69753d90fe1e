-- One row per order line; lines that share order_id make one order (aggregated downstream).
-- Emails arrive normalised from ingestion. product_id and quantity are optional (recommendations).
with source as (
    select * from {{ source('commerce', 'order_lines') }}
)

select
    {{ dbt.concat(["source_file", "':'", dbt.safe_cast("source_line", dbt.type_string())]) }} as order_line_id,
    order_id,
    customer_id,
    email,
    email_normalised,
    ordered_at,
    amount,
    currency,
    status,
    channel,
    product_id,
    quantity,
    source_file,
    loaded_at
from source
