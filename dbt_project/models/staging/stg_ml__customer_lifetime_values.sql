-- The champion lifetime-value model's scores per buyer (written by the Dagster ML assets).
select
    person_id,
    p_alive,
    expected_purchases_30d,
    expected_purchases_12m,
    expected_value_12m,
    model_version,
    as_of
from {{ source('ml', 'customer_lifetime_values') }}
