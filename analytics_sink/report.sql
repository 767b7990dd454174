-- notify report: the figures, in DuckDB SQL over the analytics sink's Parquet files.
--
-- Read by analytics_sink/report_query.py, which runs the named statements below in order. Python
-- binds only parameters ($name): three dates and one boolean per --by dimension. No text a user
-- typed is ever spliced into this file.
--
-- `raw_events` is the Parquet dataset (pyarrow.dataset, Hive-partitioned by date=YYYY-MM-DD, the
-- event's occurred_at UTC date), registered by Python with the columns below; a column an older
-- file lacks (template_id, locale, requested_at before notification_event v2) reads as NULL.
-- Timestamps are UTC without a zone attached.
--
-- Parameters:
--   $first_day, $last_day  the report's range, both inclusive (UTC dates)
--   $read_from             the first date partition read: the day before $first_day, so that a
--                          delivery's SENT (or other later event) stamped by a worker whose clock
--                          is a little behind, just before midnight, is still found
--   $read_until            the last date partition read: $last_day plus the late window (30 days by
--                          default), where the sends, retries, opens and clicks of deliveries routed
--                          in the range are found
--   $by_channel, $by_template, $by_category, $by_service, $by_locale, $by_day
--                          true: group by that column; false: that column is NULL in every row
--
-- Counting rules (the README's "The report" says the same in prose):
--   * every event_id counts once, however many times (and in however many files) it was written;
--   * a router decision (ROUTED, SUPPRESSED) belongs to the day it was made;
--   * every delivery once: a worker killed between producing an event and committing its input
--     produces the event again under a new event_id, so `sent`, `failed` and `dead_lettered` count
--     deliveries (distinct delivery_id), and `retried` counts distinct (delivery_id, attempt) pairs;
--   * a delivery belongs to the UTC day of its first ROUTED event's occurred_at (its routing day),
--     whenever it was sent: its SENT, its retries and failures, and its OPENED and CLICKED events
--     count toward that day whenever they happened, up to $read_until. That is not always the day
--     of its send: a deferred delivery (quiet hours, send_at) is sent at its ROUTED event's
--     attributes['deliver_at'], and a send may land after midnight;
--   * request-to-send latency starts at the request (requested_at), or for a deferred delivery at
--     its deliver_at, so that the hold it was meant to wait is not counted as delay;
--   * a delivery's channel, template and locale are its ROUTED event's.


-- name: load_events
-- Every event once. A replayed or duplicated event has the same event_id; the copy kept is the
-- one with the lowest (topic, partition, offset). Only the partitions that can matter are read:
-- the filter on `date` (the partition, which is occurred_at's UTC date) prunes whole files before
-- they are opened. (Filtering occurred_at itself here would reach pyarrow's row-group statistics,
-- which it cannot compare across files written with another timestamp type.)
CREATE OR REPLACE TEMP TABLE events AS
SELECT
    event_id, event_type, occurred_at, notification_id, delivery_id, service, channel, category,
    reason, template_id, locale, requested_at, attempt, attributes
FROM raw_events
WHERE date BETWEEN $read_from AND $read_until
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _topic, _partition, _offset) = 1;


-- name: load_decisions
-- The router's decisions made in the range: one row per ROUTED (one per delivery) or SUPPRESSED
-- (one per channel, or one with no channel when the whole request was dropped) event. Template and
-- locale come from the event, or from another decision about the same request when the event
-- does not carry them.
CREATE OR REPLACE TEMP TABLE decisions AS
SELECT
    notification_id,
    event_type,
    channel,
    coalesce(reason, 'unknown') AS reason,
    service,
    category,
    coalesce(template_id, max(template_id) OVER same_request) AS template_id,
    coalesce(locale, max(locale) OVER same_request) AS locale,
    CAST(occurred_at AS DATE) AS day
FROM events
WHERE event_type IN ('ROUTED', 'SUPPRESSED')
    AND CAST(occurred_at AS DATE) BETWEEN $first_day AND $last_day
WINDOW same_request AS (PARTITION BY notification_id);


-- name: load_deliveries
-- One row per delivery routed in the range, with what became of it by $read_until.
CREATE OR REPLACE TEMP TABLE deliveries AS
WITH routed AS (
    -- Its first ROUTED event: the day, the channel, the template and locale, the request's time,
    -- and for a deferred delivery when it was due (an ISO 8601 text with its UTC offset, as UTC).
    SELECT
        delivery_id, notification_id, channel, service, category, template_id, locale,
        requested_at, occurred_at AS routed_at,
        timezone('UTC', try_cast(attributes['deliver_at'] AS TIMESTAMPTZ)) AS deliver_at
    FROM events
    WHERE event_type = 'ROUTED' AND delivery_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY delivery_id ORDER BY occurred_at, event_id) = 1
),
fates AS (
    -- What the workers and the people at the other end did with it, wherever it landed.
    SELECT
        delivery_id,
        min(occurred_at) FILTER (WHERE event_type = 'SENT') AS sent_at,
        -- each failed attempt once, even when re-emitted under a new event_id (an event without
        -- an attempt number counts as itself)
        count(DISTINCT coalesce(CAST(attempt AS VARCHAR), event_id))
            FILTER (WHERE event_type = 'FAILED_RETRYING') AS retries,
        bool_or(event_type = 'FAILED_PERMANENT') AS failed,
        bool_or(event_type = 'DEAD_LETTERED') AS dead_lettered,
        bool_or(event_type = 'OPENED') AS opened,
        bool_or(event_type = 'CLICKED') AS clicked
    FROM events
    WHERE delivery_id IS NOT NULL
        AND event_type IN (
            'SENT', 'FAILED_RETRYING', 'FAILED_PERMANENT', 'DEAD_LETTERED', 'OPENED', 'CLICKED'
        )
    GROUP BY delivery_id
)
SELECT
    routed.delivery_id,
    routed.notification_id,
    routed.channel,
    routed.service,
    routed.category,
    routed.template_id,
    routed.locale,
    CAST(routed.routed_at AS DATE) AS day,
    fates.sent_at,
    coalesce(fates.retries, 0) AS retries,
    coalesce(fates.failed, false) AS failed,
    coalesce(fates.dead_lettered, false) AS dead_lettered,
    coalesce(fates.opened, false) AS opened,
    coalesce(fates.clicked, false) AS clicked,
    -- From the request (its created_at), or for a deferred delivery from when it was due, to the
    -- provider's acceptance of the first send; NULL without requested_at (files before v2).
    date_diff(
        'millisecond',
        CASE WHEN routed.requested_at IS NOT NULL THEN coalesce(routed.deliver_at, routed.requested_at) END,
        fates.sent_at
    ) AS request_to_send_ms
FROM routed
LEFT JOIN fates USING (delivery_id)
WHERE CAST(routed.routed_at AS DATE) BETWEEN $first_day AND $last_day;


-- name: load_facts
-- Decisions and deliveries side by side, each with the group it falls in for this --by: a
-- dimension not asked for is NULL everywhere, so it does not split the groups.
CREATE OR REPLACE TEMP TABLE facts AS
WITH side_by_side AS (
    SELECT 'decision' AS kind, * FROM decisions
    UNION ALL BY NAME
    SELECT 'delivery' AS kind, * FROM deliveries
)
SELECT
    CASE WHEN $by_channel THEN channel END AS g_channel,
    CASE WHEN $by_template THEN template_id END AS g_template,
    CASE WHEN $by_category THEN category END AS g_category,
    CASE WHEN $by_service THEN service END AS g_service,
    CASE WHEN $by_locale THEN locale END AS g_locale,
    CASE WHEN $by_day THEN day END AS g_day,
    *
FROM side_by_side;


-- name: figures
-- The figures of each group. Rates are fractions rounded to 4 decimals, NULL when nothing was
-- there to divide by; percentiles interpolate linearly between the two nearest deliveries (as
-- numpy's default does) and are rounded to 0.1 ms.
WITH counted AS (
    SELECT
        g_channel, g_template, g_category, g_service, g_locale, g_day,
        -- requests the router decided on (routed or suppressed), each once
        count(DISTINCT notification_id) FILTER (WHERE kind = 'decision') AS requested,
        count(*) FILTER (WHERE kind = 'delivery') AS routed,
        -- (request, channel) pairs suppressed; a whole-request suppression is one pair
        count(DISTINCT notification_id || '/' || coalesce(channel, ''))
            FILTER (WHERE kind = 'decision' AND event_type = 'SUPPRESSED') AS suppressed,
        count(sent_at) AS sent,
        coalesce(sum(retries), 0) AS retried,
        count(*) FILTER (WHERE failed) AS failed,
        count(*) FILTER (WHERE dead_lettered) AS dead_lettered,
        -- engagement is counted on sent deliveries only, each delivery once
        count(*) FILTER (WHERE opened AND sent_at IS NOT NULL) AS opened,
        count(*) FILTER (WHERE clicked AND sent_at IS NOT NULL) AS clicked,
        quantile_cont(CAST(request_to_send_ms AS DOUBLE), 0.5) AS p50_request_to_send_ms,
        quantile_cont(CAST(request_to_send_ms AS DOUBLE), 0.95) AS p95_request_to_send_ms
    FROM facts
    GROUP BY g_channel, g_template, g_category, g_service, g_locale, g_day
)
SELECT
    g_channel, g_template, g_category, g_service, g_locale, g_day,
    CAST(requested AS BIGINT) AS requested,
    CAST(routed AS BIGINT) AS routed,
    CAST(suppressed AS BIGINT) AS suppressed,
    CAST(sent AS BIGINT) AS sent,
    CAST(retried AS BIGINT) AS retried,
    CAST(failed AS BIGINT) AS failed,
    CAST(dead_lettered AS BIGINT) AS dead_lettered,
    CAST(opened AS BIGINT) AS opened,
    CAST(clicked AS BIGINT) AS clicked,
    round(sent / nullif(routed, 0), 4) AS delivery_rate,
    round(opened / nullif(sent, 0), 4) AS open_rate,
    round(clicked / nullif(sent, 0), 4) AS click_rate,
    round(p50_request_to_send_ms, 1) AS p50_request_to_send_ms,
    round(p95_request_to_send_ms, 1) AS p95_request_to_send_ms
FROM counted
ORDER BY g_channel, g_template, g_category, g_service, g_locale, g_day;  -- NULL (no value) last


-- name: suppressions
-- Suppressed (request, channel) pairs per reason, in the same groups as `figures`.
SELECT
    g_channel, g_template, g_category, g_service, g_locale, g_day,
    reason,
    CAST(count(DISTINCT notification_id || '/' || coalesce(channel, '')) AS BIGINT) AS suppressed
FROM facts
WHERE kind = 'decision' AND event_type = 'SUPPRESSED'
GROUP BY g_channel, g_template, g_category, g_service, g_locale, g_day, reason
ORDER BY g_channel, g_template, g_category, g_service, g_locale, g_day, reason;
