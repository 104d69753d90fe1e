{#
  Generic test: no two rows share the values of `combination_of_columns` (nulls count as equal
  values, as in GROUP BY), for a model whose key is several columns.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as rows_with_these_values
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
