-- Propensity labels: for each cutoff before the scoring date, whether each person completed an
-- order in the tessera__label_window_days after it (cutoff exclusive, cutoff + window inclusive).
-- Features for the same person and cutoff use nothing after the cutoff, so features and labels never overlap.
with cutoffs as (
    select as_of from {{ ref('int_feature_dates') }}
    where purpose <> 'scoring'
),

persons as (
    select distinct f.person_id, f.as_of
    from {{ ref('user_features') }} f
    join cutoffs c on c.as_of = f.as_of
),

future_orders as (
    select c.as_of, o.person_id, count(*) as orders_in_window
    from {{ ref('int_orders') }} o
    join cutoffs c
        on cast(o.ordered_at as date) > c.as_of
        and cast(o.ordered_at as date) <= {{ dbt.dateadd('day', var('tessera__label_window_days'), 'c.as_of') }}
    where o.status = 'completed' and o.person_id is not null
    group by c.as_of, o.person_id
)

select
    p.person_id,
    p.as_of,
    {{ dbt.concat(["p.person_id", "'|'", "cast(p.as_of as " ~ dbt.type_string() ~ ")"]) }} as person_as_of_key,
    coalesce(f.orders_in_window, 0) as orders_in_window,
    coalesce(f.orders_in_window, 0) > 0 as purchased_in_window
from persons p
left join future_orders f on f.person_id = p.person_id and f.as_of = p.as_of
