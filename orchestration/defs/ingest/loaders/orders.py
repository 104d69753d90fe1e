"""Order lines (orders/*.csv) -> raw.order_lines."""

from __future__ import annotations

import babel.numbers

from orchestration.defs.ingest.loaders.common import MAX_FUTURE_SKEW, FieldCheck, Rule
from orchestration.defs.ingest.loaders.tabular import (
    CsvSource,
    code_list,
    email_checks,
    number_rule,
    required_rule,
    timestamp_rule,
    timestamp_sql,
)
from orchestration.lib import reason_codes as F

# ISO 4217 currencies, as CLDR (through Babel) knows them.
CURRENCY_CODES = code_list(babel.numbers.list_currencies())

ORDERS = CsvSource(
    name="orders",
    table="order_lines",
    columns=(
        "order_id",
        "customer_id",
        "email",
        "ordered_at",
        "amount",
        "currency",
        "status",
        "channel",
        "product_id",
        "quantity",
    ),
    required=(("order_id",), ("ordered_at",), ("amount",), ("status",), ("customer_id", "email")),
    rules=(
        required_rule("order_id", "ordered_at", "amount", "status"),
        Rule(
            F.MISSING_CUSTOMER,
            "nullif(customer_id, '') IS NULL AND email_normalised IS NULL",
            "'customer_id is empty and email ' || coalesce('\"' || nullif(email, '') || '\" is not an address', "
            "'is empty') || '; an order needs one of them'",
        ),
        timestamp_rule("ordered_at"),
        Rule(
            F.FUTURE_TIMESTAMP,
            f"timezone('UTC', try_cast(ordered_at AS TIMESTAMPTZ)) > loaded_at + {MAX_FUTURE_SKEW}",
            "'ordered_at ' || ordered_at || ' is more than a day after its file arrived (the row''s loaded_at)'",
        ),
        number_rule("amount", "DECIMAL(18, 2)"),
        Rule(
            F.INVALID_VALUE,
            "lower(status) NOT IN ('completed', 'refunded', 'cancelled')",
            "'status \"' || status || '\" is not one of completed, refunded, cancelled'",
        ),
        Rule(
            F.NEGATIVE_AMOUNT,
            "lower(status) = 'completed' AND try_cast(amount AS DECIMAL(18, 2)) < 0",
            "'amount ' || amount || ' is negative on a completed order; send refunds with status refunded'",
        ),
    ),
    fields=(
        *email_checks(),
        FieldCheck(
            "currency",
            F.INVALID_VALUE,
            f"nullif(currency, '') IS NOT NULL AND upper(trim(currency)) NOT IN ({CURRENCY_CODES})",
            "'currency \"' || currency || '\" is not an ISO 4217 code'",
        ),
        FieldCheck(  # the line's product, for recommendations; an order line without one still counts
            "quantity",
            F.INVALID_NUMBER,
            "nullif(quantity, '') IS NOT NULL AND coalesce(try_cast(quantity AS DOUBLE) <= 0, true)",
            "'quantity \"' || quantity || '\" is not a positive number'",
        ),
    ),
    select=(
        "order_id, nullif(customer_id, '') AS customer_id, nullif(email, '') AS email, email_normalised, "
        f"{timestamp_sql('ordered_at')}, CAST(amount AS DECIMAL(18, 2)) AS amount, upper(trim(nullif(currency, ''))) AS currency, "
        "lower(status) AS status, nullif(lower(channel), '') AS channel, nullif(trim(product_id), '') AS product_id, "
        "CAST(nullif(quantity, '') AS DOUBLE) AS quantity"
    ),
    # Orders with neither customer_id nor email: quarantined, they cannot be resolved.
    checked_counts=(
        ("guest_orders", f"SELECT count(DISTINCT order_id) FROM _checked WHERE reason_code = '{F.MISSING_CUSTOMER}'"),
    ),
)
