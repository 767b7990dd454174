-- The trace context (W3C traceparent) of the router span that deferred a message: the release
-- carries it, so a message held for quiet hours or send_at stays in its request's one trace.
-- Null for rows deferred before this column, and when the router had no context to carry.
alter table router_deferred add column traceparent text;
