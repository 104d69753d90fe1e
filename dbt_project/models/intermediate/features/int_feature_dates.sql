-- depends_on: {{ ref('int_segment__events') }}, {{ ref('stg_commerce__order_lines') }}, {{ ref('stg_crm__customers') }}
-- The dates features are computed as of: the scoring date (var tessera__as_of, else the latest
-- valid event or order date, else the latest CRM record's; never now()); the propensity training
-- cutoff tessera__label_window_days before it; and the backtest cutoff one more window back, whose
-- models are validated on the training cutoff's labels.
with latest as (
    {% if var('tessera__as_of') %}
    select cast('{{ var("tessera__as_of") }}' as date) as as_of
    {% else %}
    -- With no events and no orders (a CRM-only input), the latest CRM record dates the run.
    select coalesce(max(d), (select max(cast(updated_at as date)) from {{ ref('stg_crm__customers') }})) as as_of
    from (
        select max(cast(occurred_at as date)) as d from {{ ref('int_segment__events') }}
        union all
        select max(cast(ordered_at as date)) from {{ ref('stg_commerce__order_lines') }}
    ) t
    {% endif %}
)

select as_of, 'scoring' as purpose from latest
union all
select {{ dbt.dateadd('day', -var('tessera__label_window_days'), 'as_of') }}, 'training_cutoff' from latest
union all
select {{ dbt.dateadd('day', -2 * var('tessera__label_window_days'), 'as_of') }}, 'backtest_cutoff' from latest
