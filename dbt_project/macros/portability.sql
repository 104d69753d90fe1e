{# Small dispatch macros where DuckDB and Spark SQL differ (see STACK_NOTES.md). #}

{# A cast that yields NULL instead of failing: dbt's safe_cast is a plain CAST on DuckDB. #}
{% macro duckdb__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{# The text at a JSONPath inside a JSON column. #}
{% macro json_text(column, path) -%}
    {{ return(adapter.dispatch('json_text', 'tessera')(column, path)) }}
{%- endmacro %}

{% macro default__json_text(column, path) -%}
    get_json_object({{ column }}, '{{ path }}')
{%- endmacro %}

{% macro duckdb__json_text(column, path) -%}
    json_extract_string({{ column }}, '{{ path }}')
{%- endmacro %}

{# Trimmed text, with empty strings as NULL. #}
{% macro clean_text(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}
