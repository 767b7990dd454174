-- One row per delivery_id: claimed before the provider call, marked after it. A redelivered Kafka
-- record whose delivery already ended is not sent again.
create table delivery_log (
    delivery_id text primary key,
    notification_id text not null,
    channel text not null,
    status text not null check (status in ('sending', 'sent', 'retrying', 'failed', 'dead_lettered')),
    attempts int not null default 0,
    claimed_by text,
    claimed_until timestamptz,
    provider_message_id text,
    last_error text,
    first_failed_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    sent_at timestamptz
);

create index delivery_log_by_notification on delivery_log (notification_id);
