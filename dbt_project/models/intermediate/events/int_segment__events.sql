-- stg_segment__events materialised, incremental by event day: a daily run flattens the JSON of
-- one partition plus the late-arrival lookback (macros/event_window.sql), not the whole history.
-- Every model downstream reads events from here.
{{ config(
    materialized='incremental',
    unique_key='message_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_event_window() }}",
) }}

select
    *,
    cast({{ dbt.date_trunc('day', 'occurred_at') }} as date) as event_date
from {{ ref('stg_segment__events') }}
{% if is_incremental() %}
where {{ event_window('occurred_at') }}
{% endif %}
