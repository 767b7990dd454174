-- Router state that must survive crashes. Written before the router commits its Kafka transaction;
-- every row is keyed so that replaying an aborted batch changes nothing.

-- Dedupe marks: the (partition, offset) that first saw a key tells a replay from a duplicate.
create table router_seen (
    dedupe_key        text primary key,
    source_partition  int not null,
    source_offset     bigint not null,
    seen_at           timestamptz not null
);
create index router_seen_by_time on router_seen (seen_at);

-- One row per (notification, channel) routed: what frequency caps count.
create table router_routed (
    delivery_id  text primary key,
    user_id      text not null,
    channel      text not null,
    category     text not null,
    routed_at    timestamptz not null
);
create index router_routed_for_caps on router_routed (user_id, category, channel, routed_at);

-- Messages held for later (quiet hours, send_at), released when due.
create table router_deferred (
    delivery_id  text primary key,
    due_at       timestamptz not null,
    topic        text not null,
    msg_key      bytea,
    msg_value    bytea not null,
    created_at   timestamptz not null,
    released_at  timestamptz
);
create index router_deferred_due on router_deferred (due_at) where released_at is null;
