{#- A taxonomy var (a list of event names, or one name) as a quoted SQL list for `in (...)`. -#}
{% macro event_names(var_name) -%}
    {%- set names = var(var_name) -%}
    {%- if names is string -%}{%- set names = [names] -%}{%- endif -%}
    {%- for name in names -%}
        '{{ name | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
