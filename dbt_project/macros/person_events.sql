{#
  An event's person: its userId's person decides over its anonymousId's, so that two people who
  shared a device stay apart. join_event_identity joins the identity map (aliases u and a).
#}
{% macro join_event_identity(events, identity) -%}
    left join {{ identity }} u on u.identifier_type = 'user_id' and u.identifier = {{ events }}.user_id
    left join {{ identity }} a on a.identifier_type = 'anonymous_id' and a.identifier = {{ events }}.anonymous_id
{%- endmacro %}

{% macro person_of_event(u, a) -%}
    coalesce({{ u }}.person_id, {{ a }}.person_id)
{%- endmacro %}

{#
  Pre-hook of int_person_events: delete the rows whose event changed or left int_segment__events
  (message_id, source_file and loaded_at are its version), and those whose person the identity map
  now gives differently. The run then appends every event without a row.
#}
{% macro delete_stale_person_events() -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where message_id in (
        select t.message_id
        from {{ this }} t
        left join {{ ref('int_segment__events') }} e
          on e.message_id = t.message_id and e.source_file = t.source_file and e.loaded_at = t.loaded_at
        {{ join_event_identity('t', ref('identity_map')) }}
        where e.message_id is null or {{ person_of_event('u', 'a') }} is distinct from t.person_id
    )
    {%- endif -%}
{%- endmacro %}
