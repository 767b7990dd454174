-- Users, their contacts and devices, preferences, and templates: what the router reads.

create table users (
    user_id     text primary key,
    locale      text not null default 'en',
    time_zone   text not null default 'UTC',
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table user_emails (
    contact_id          bigserial primary key,
    user_id             text not null references users on delete cascade,
    address             text not null check (address = lower(address) and address like '%_@_%'),
    active              boolean not null default true,
    deactivated_at      timestamptz,
    deactivated_reason  text,
    unique (user_id, address)
);

create table user_phones (
    contact_id          bigserial primary key,
    user_id             text not null references users on delete cascade,
    e164                text not null check (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    active              boolean not null default true,
    deactivated_at      timestamptz,
    deactivated_reason  text,
    unique (user_id, e164)
);

create table devices (
    device_id           bigserial primary key,
    user_id             text not null references users on delete cascade,
    platform            text not null check (platform in ('ios', 'android')),
    token               text not null,
    app                 text not null,
    active              boolean not null default true,
    last_seen_at        timestamptz not null default now(),
    deactivated_at      timestamptz,
    deactivated_reason  text,
    unique (platform, token)
);
create index devices_by_user on devices (user_id);

create table categories (
    category     text primary key,
    mandatory    boolean not null default false,
    description  text
);

create table category_caps (
    category     text not null references categories on delete cascade,
    channel      text not null check (channel in ('ios', 'android', 'sms', 'email')),
    max_per_day  int not null check (max_per_day > 0),
    primary key (category, channel)
);

create table preferences (
    user_id     text not null references users on delete cascade,
    category    text not null,
    channel     text not null check (channel in ('ios', 'android', 'sms', 'email')),
    opted_in    boolean not null,
    updated_at  timestamptz not null default now(),
    primary key (user_id, category, channel)
);

create table channel_unsubscribes (
    user_id          text not null references users on delete cascade,
    channel          text not null check (channel in ('ios', 'android', 'sms', 'email')),
    unsubscribed_at  timestamptz not null default now(),
    primary key (user_id, channel)
);

create table quiet_hours (
    user_id      text primary key references users on delete cascade,
    start_local  time not null,
    end_local    time not null,
    check (start_local <> end_local)
);

create table templates (
    template_id    text not null,
    channel        text not null check (channel in ('ios', 'android', 'sms', 'email')),
    locale         text not null,
    version        int not null check (version > 0),
    title          text,
    body           text,
    data           jsonb not null default '{}',
    sms_text       text,
    email_subject  text,
    email_html     text,
    email_text     text,
    created_at     timestamptz not null default now(),
    primary key (template_id, channel, locale, version)
);
