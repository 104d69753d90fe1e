-- One row per person: ids and hashes only (PII is in pii.person_contacts). Survivorship:
-- contact fields from the latest CRM record; country and device type by frequency. Consent fails
-- closed: each record's latest explicit value is current (a blank or unreadable one undoes
-- nothing), and of a person's current values an opt-out wins over an opt-in, also when it comes
-- from a record quarantined whole. NULL: no consent evidence at all.
with identity as (
    select * from {{ ref('identity_map') }}
),

persons as (
    select
        person_id,
        count(*) as identifiers,
        count(case when identifier_type = 'anonymous_id' then 1 end) as devices,
        max(case when identifier_type = 'user_id' then identifier end) as user_id,
        max(case when identifier_type = 'customer_id' then 1 else 0 end) = 1 as is_customer
    from identity
    group by person_id
),

-- Events come summed per day and combination of identifiers, country and device type.
events as (
    select i.person_id, e.first_observed_at, e.last_observed_at, e.observations, e.country, e.device_type,
           e.traits_email_normalised
    from {{ ref('int_segment__event_days') }} e
    join identity i
      on (i.identifier_type = 'anonymous_id' and i.identifier = e.anonymous_id)
    where e.anonymous_id is not null
    union all
    select i.person_id, e.first_observed_at, e.last_observed_at, e.observations, e.country, e.device_type,
           e.traits_email_normalised
    from {{ ref('int_segment__event_days') }} e
    join identity i on i.identifier_type = 'user_id' and i.identifier = e.user_id
    where e.anonymous_id is null
),

crm as (
    select i.person_id, c.*
    from {{ ref('stg_crm__customers') }} c
    join identity i on i.identifier_type = 'customer_id' and i.identifier = c.customer_id
),

orders as (
    select coalesce(ic.person_id, ie.person_id) as person_id, o.ordered_at
    from {{ ref('stg_commerce__order_lines') }} o
    left join identity ic on ic.identifier_type = 'customer_id' and ic.identifier = o.customer_id
    left join identity ie on ie.identifier_type = 'email_sha256' and ie.identifier = {{ sha256_hex('o.email_normalised') }}
),

rejected_opt_outs as (
    select * from {{ ref('stg_crm__rejected_opt_outs') }}
),

-- Emails a person presented in their own identify calls.
presented_emails as (
    select distinct person_id, traits_email_normalised as email_normalised
    from events
    where traits_email_normalised is not null
),

-- Every explicit consent statement, with its subject (the record it belongs to) and when it was made.
-- `presented`: the statement reached the person through an email they presented, not through the
-- identity map (which keeps two logins apart even when both gave the email of one CRM record).
-- Such a record's current value binds the person only when it is an opt-out: consent fails closed.
consent_statements as (
    select person_id, customer_id as subject, updated_at as stated_at, customer_record_id as stated_in,
           personalization_opt_in, marketing_opt_in, false as presented
    from crm
    union all
    select i.person_id, r.customer_id, r.updated_at, r.rejected_record_id, r.personalization_opt_in, r.marketing_opt_in,
           false
    from rejected_opt_outs r
    join identity i on i.identifier_type = 'customer_id' and i.identifier = r.customer_id
    union all
    select i.person_id, coalesce(r.customer_id, r.email_normalised), r.updated_at, r.rejected_record_id,
           r.personalization_opt_in, r.marketing_opt_in, false
    from rejected_opt_outs r
    join identity i on i.identifier_type = 'email_sha256' and i.identifier = {{ sha256_hex('r.email_normalised') }}
    union all
    select p.person_id, c.customer_id, c.updated_at, c.customer_record_id, c.personalization_opt_in,
           c.marketing_opt_in, true
    from {{ ref('stg_crm__customers') }} c
    join presented_emails p on p.email_normalised = c.email_normalised
    union all
    select p.person_id, coalesce(r.customer_id, r.email_normalised), r.updated_at, r.rejected_record_id,
           r.personalization_opt_in, r.marketing_opt_in, true
    from rejected_opt_outs r
    join presented_emails p on p.email_normalised = r.email_normalised
),

{% for consent in ['personalization_opt_in', 'marketing_opt_in'] %}
{{ consent }}_decision as (
    select person_id, value as {{ consent }}, stated_in as {{ consent }}_decided_by, stated_at as {{ consent }}_decided_at
    from (
        select current_values.*,
               row_number() over (partition by person_id
                                  order by case when value then 1 else 0 end, stated_at desc, stated_in) as rn
        from (
            -- A statement with no readable date (from a rejected record) stays current: it fails closed.
            select person_id, subject, {{ consent }} as value, stated_at, stated_in, presented,
                   row_number() over (partition by person_id, subject
                                      order by case when stated_at is null then 0 else 1 end, stated_at desc,
                                               case when {{ consent }} then 1 else 0 end,
                                               case when presented then 1 else 0 end, stated_in) as recency
            from consent_statements
            where {{ consent }} is not null
        ) current_values
        where recency = 1 and (not presented or not value)
    ) ranked
    where rn = 1
),
{% endfor %}

latest_crm as (
    select *
    from (
        select crm.*, row_number() over (partition by person_id order by updated_at desc, customer_id) as rn
        from crm
    ) ranked
    where rn = 1
),

country_votes as (
    select person_id, country, sum(observations) as n from events where country is not null group by person_id, country
    union all
    select person_id, country, 1000000 from latest_crm where country is not null
),

top_country as (
    select person_id, country
    from (
        select person_id, country, row_number() over (partition by person_id order by sum(n) desc, country) as rn
        from country_votes group by person_id, country
    ) ranked
    where rn = 1
),

top_device as (
    select person_id, device_type as primary_device_type
    from (
        select person_id, device_type,
               row_number() over (partition by person_id order by sum(observations) desc, device_type) as rn
        from events where device_type is not null
        group by person_id, device_type
    ) ranked
    where rn = 1
),

seen as (
    select person_id, min(first_at) as first_seen_at, max(last_at) as last_seen_at
    from (
        select person_id, first_observed_at as first_at, last_observed_at as last_at from events
        union all
        select person_id, ordered_at, ordered_at from orders where person_id is not null
        union all
        select person_id, signup_at, signup_at from crm where signup_at is not null
    ) t
    group by person_id
),

email_for_domain as (
    select person_id, email_domain from latest_crm where email_domain is not null
    union all
    select person_id, {{ dbt.split_part("traits_email_normalised", "'@'", 2) }}
    from events
    where traits_email_normalised is not null
      and person_id not in (select person_id from latest_crm where email_domain is not null)
),

person_domain as (
    select person_id, max(email_domain) as email_domain from email_for_domain group by person_id
)

select
    p.person_id,
    p.user_id,
    p.is_customer,
    p.identifiers,
    p.devices,
    {{ sha256_hex('c.email_normalised') }} as email_sha256,
    {{ sha256_hex('c.phone_e164') }} as phone_sha256,
    s.first_seen_at,
    s.last_seen_at,
    tc.country,
    td.primary_device_type,
    pc.personalization_opt_in,
    pc.personalization_opt_in_decided_by as consent_decided_by,
    pc.personalization_opt_in_decided_at as consent_decided_at,
    mc.marketing_opt_in,
    c.updated_at as crm_updated_at,
    d.email_domain,
    f.company_name,
    f.industry,
    f.employee_count,
    f.annual_revenue_usd
from persons p
left join latest_crm c on c.person_id = p.person_id
left join personalization_opt_in_decision pc on pc.person_id = p.person_id
left join marketing_opt_in_decision mc on mc.person_id = p.person_id
left join seen s on s.person_id = p.person_id
left join top_country tc on tc.person_id = p.person_id
left join top_device td on td.person_id = p.person_id
left join person_domain d on d.person_id = p.person_id
left join {{ ref('stg_enrichment__firmographics') }} f on f.email_domain = d.email_domain
