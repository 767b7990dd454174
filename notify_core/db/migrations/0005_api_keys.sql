-- The HTTP API's own state: service API keys and the Idempotency-Key records of its ingestion.

-- A key is shown once, when made; only its SHA-256 digest is kept. key_id is the readable public
-- part of the token (nfy_<key_id>_<secret>), so a lookup needs no scan and no digest index.
create table api_keys (
    key_id       text primary key,
    service      text not null,
    scopes       text[] not null check (cardinality(scopes) > 0),
    digest       bytea not null check (length(digest) = 32),
    rate_per_s   double precision check (rate_per_s > 0),
    burst        int check (burst > 0),
    description  text,
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz
);
create index api_keys_by_service on api_keys (service);

-- One row per (service, Idempotency-Key): the fingerprint of the body first sent with it, so a
-- retry with the same body gets the same notification ids and one with another body is refused.
create table api_idempotency (
    service      text not null,
    idem_key     text not null,
    fingerprint  bytea not null,
    created_at   timestamptz not null default now(),
    primary key (service, idem_key)
);
create index api_idempotency_by_time on api_idempotency (created_at);
