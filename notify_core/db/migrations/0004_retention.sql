-- Pruning past retention, in bounded batches, by the running router and workers: each delete
-- picks its oldest rows through one of these indexes instead of scanning the table.
create index router_routed_by_time on router_routed (routed_at);
create index router_deferred_released on router_deferred (released_at) where released_at is not null;
create index delivery_log_finished on delivery_log (updated_at)
    where status in ('sent', 'failed', 'dead_lettered');
