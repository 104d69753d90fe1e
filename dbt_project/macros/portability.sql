{# Small dispatch macros where DuckDB and Spark SQL differ (see docs/stack_notes.md). #}

{# A cast that yields NULL instead of failing: dbt's safe_cast is a plain CAST on DuckDB. #}
{% macro duckdb__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{# Trimmed text, with empty strings as NULL. #}
{% macro clean_text(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}

{# Hex SHA-256 of a text expression. #}
{% macro sha256_hex(expr) -%}
    {{ return(adapter.dispatch('sha256_hex', 'tessera')(expr)) }}
{%- endmacro %}

{% macro default__sha256_hex(expr) -%}
    sha2({{ expr }}, 256)
{%- endmacro %}

{% macro duckdb__sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

{# True where a text expression matches a regular expression (partial match). #}
{% macro regex_matches(expr, pattern) -%}
    {{ return(adapter.dispatch('regex_matches', 'tessera')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(expr, pattern) -%}
    ({{ expr }} rlike '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regex_matches(expr, pattern) -%}
    regexp_matches({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{# Lower-case with accents folded, for comparing names (portable: translate exists on both engines). #}
{% macro fold_name(expr) -%}
    nullif(trim(lower(translate({{ expr }},
        'ÁÀÂÄÃÅáàâäãåÉÈÊËéèêëÍÌÎÏíìîïÓÒÔÖÕØóòôöõøÚÙÛÜúùûüÑñÇçÝýÿŁłŚśŠšŽžŻżŹź',
        'AAAAAAaaaaaaEEEEeeeeIIIIiiiiOOOOOOooooooUUUUuuuuNnCcYyyLlSsSsZzZzZz'))), '')
{%- endmacro %}

{# The SQL list of identifier values that are never identity evidence. #}
{% macro blocked_values_sql() -%}
    ({% for v in var('tessera__identity_blocked_values') %}'{{ v | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{# A UTC timestamp as wall-clock time in an IANA zone (DST-aware). #}
{% macro to_local_time(ts, tz) -%}
    {{ return(adapter.dispatch('to_local_time', 'tessera')(ts, tz)) }}
{%- endmacro %}

{% macro default__to_local_time(ts, tz) -%}
    from_utc_timestamp({{ ts }}, {{ tz }})
{%- endmacro %}

{% macro duckdb__to_local_time(ts, tz) -%}
    timezone({{ tz }}, timezone('UTC', {{ ts }}))
{%- endmacro %}

{# Whole days from a to b (dates or timestamps). #}
{% macro days_between(a, b) -%}
    {{ dbt.datediff(a, b, 'day') }}
{%- endmacro %}

{# ISO day of week, Monday = 1 .. Sunday = 7 (engines number Sunday differently). #}
{% macro day_of_week(ts) -%}
    {{ return(adapter.dispatch('day_of_week', 'tessera')(ts)) }}
{%- endmacro %}

{% macro default__day_of_week(ts) -%}
    ((dayofweek({{ ts }}) + 5) % 7 + 1)
{%- endmacro %}

{% macro duckdb__day_of_week(ts) -%}
    isodow({{ ts }})
{%- endmacro %}

{# The last non-NULL value of an expression up to the current row of a window (its default frame). #}
{% macro last_non_null(expr) -%}
    {{ return(adapter.dispatch('last_non_null', 'tessera')(expr)) }}
{%- endmacro %}

{% macro default__last_non_null(expr) -%}
    last_value({{ expr }}, true)
{%- endmacro %}

{% macro duckdb__last_non_null(expr) -%}
    last_value({{ expr }} ignore nulls)
{%- endmacro %}
