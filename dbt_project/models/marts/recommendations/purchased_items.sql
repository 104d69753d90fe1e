-- One row per product line of a completed order, with its person: what the recommender learns
-- from. Orders take their person and status from int_orders (orders/ decides a refund); lines
-- without a product, and orders of nobody, are left out.
with orders as (
    select order_id, person_id from {{ ref('int_orders') }}
    where status = 'completed' and person_id is not null
),

lines as (
    select order_line_id, order_id, product_id, quantity, amount, ordered_at
    from {{ ref('stg_commerce__order_lines') }}
    where product_id is not null
)

select
    l.order_line_id,
    o.person_id,
    l.order_id,
    l.product_id,
    coalesce(l.quantity, 1) as quantity,
    l.amount,
    l.ordered_at
from lines l
inner join orders o on o.order_id = l.order_id
