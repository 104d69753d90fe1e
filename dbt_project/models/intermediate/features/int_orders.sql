-- One row per order, with its person. orders/ decides an order's status and amount (a refunded
-- order's Order Completed event does not make it completed); orders seen only as events count too.
with identity as (
    select identifier_type, identifier, person_id from {{ ref('identity_map') }}
),

lines as (
    select * from {{ ref('stg_commerce__order_lines') }}
),

exported as (
    select
        order_id,
        max(customer_id) as customer_id,
        max(email_normalised) as email_normalised,
        min(ordered_at) as ordered_at,
        sum(amount) as amount,
        case
            when max(case when status = 'refunded' then 1 else 0 end) = 1 then 'refunded'
            when max(case when status = 'cancelled' then 1 else 0 end) = 1 then 'cancelled'
            else 'completed'
        end as status
    from lines
    group by order_id
),

exported_with_person as (
    select
        o.order_id,
        coalesce(c.person_id, e.person_id) as person_id,
        o.ordered_at,
        o.amount,
        o.status,
        'orders' as seen_in
    from exported o
    left join identity c on c.identifier_type = 'customer_id' and c.identifier = o.customer_id
    left join identity e on e.identifier_type = 'email_sha256' and e.identifier = {{ sha256_hex('o.email_normalised') }}
),

event_orders as (
    select order_id, person_id, occurred_at as ordered_at, revenue as amount
    from (
        select *, row_number() over (partition by order_id order by occurred_at, message_id) as copy_no
        from {{ ref('int_person_events') }}
        where behaviour = 'purchase' and order_id is not null
    ) ranked
    where copy_no = 1
)

select * from exported_with_person
union all
select order_id, person_id, ordered_at, amount, 'completed', 'events'
from event_orders
where order_id not in (select order_id from exported)
