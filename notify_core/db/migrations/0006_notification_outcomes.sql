-- What the router decided for each request, for the status endpoint (GET /v1/notifications/{id}).
-- Written in the router's state transaction, next to router_seen; the deliveries themselves are in
-- delivery_log (by notification_id). Pruned past the dedupe window, like router_seen.
create table router_outcomes (
    notification_id   text primary key,
    service           text not null,
    user_id           text not null,
    category          text not null,
    template_id       text not null,
    outcome           text not null check (outcome in ('routed', 'suppressed', 'rejected')),
    -- Why the whole request was suppressed (duplicate, expired, opted_out, ...) or rejected
    -- (missing_param, template_syntax, internal_error, ...); null when routed.
    reason            text check ((reason is null) = (outcome = 'routed')),
    -- One entry per delivery routed or deferred and per channel suppressed:
    -- [{"channel", "state": "routed"|"deferred"|"suppressed", "delivery_id", "reason", "deliver_at"}]
    channels          jsonb not null default '[]' check (jsonb_typeof(channels) = 'array'),
    -- The request record this decision is for: a replay of the same record may replace its own
    -- decision, a duplicate (another record, same id) may not.
    source_partition  int not null,
    source_offset     bigint not null,
    decided_at        timestamptz not null
);
create index router_outcomes_by_time on router_outcomes (decided_at);
