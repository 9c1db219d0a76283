-- Beacon Proxy storage. Applied at start-up, idempotently; {database} and the {..._ttl} expressions are
-- filled in from settings. Column names are a contract with analysts: add, never rename.
-- Every column's COMMENT reads "meaning | source: ... | consent: ..."; `beaconproxy inventory` builds
-- the data inventory from these comments and the retention settings, so the two cannot drift.
CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id        UUID COMMENT 'random id of the stored row | source: server | consent: none',
    site            LowCardinality(String) COMMENT 'site id from configuration | source: beacon | consent: none',
    ts              DateTime64(3, 'UTC') COMMENT 'event time (client clock within bounds, else server) | source: beacon, server | consent: none',
    type            LowCardinality(String) COMMENT 'pageview or event | source: beacon | consent: none',
    name            String COMMENT 'event name, PII redacted | source: beacon | consent: none',
    url             String COMMENT 'page URL: scheme, host, path, allow-listed query parameters, PII redacted | source: beacon | consent: none',
    referrer        String COMMENT 'referrer origin only | source: beacon | consent: none',
    title           String COMMENT 'page title, PII redacted | source: beacon | consent: none',
    utm_source      String COMMENT 'utm_source query parameter | source: beacon URL | consent: none',
    utm_medium      String COMMENT 'utm_medium query parameter | source: beacon URL | consent: none',
    utm_campaign    String COMMENT 'utm_campaign query parameter | source: beacon URL | consent: none',
    utm_term        String COMMENT 'utm_term query parameter | source: beacon URL | consent: none',
    utm_content     String COMMENT 'utm_content query parameter | source: beacon URL | consent: none',
    props           Map(String, String) COMMENT 'custom properties, denylisted keys dropped, values redacted | source: beacon | consent: none',
    ip              String COMMENT 'truncated client IP (IPv4 /24, IPv6 /48 by default) | source: request | consent: none',
    country         LowCardinality(String) COMMENT 'ISO country code from GeoIP on the full IP, in memory | source: request | consent: none',
    region          LowCardinality(String) COMMENT 'first-level region from GeoIP | source: request | consent: none',
    city            LowCardinality(String) COMMENT 'city from GeoIP, only when geoip.city is on | source: request | consent: none',
    latitude        Nullable(Float64) COMMENT 'visitor-supplied precise latitude | source: beacon | consent: precise_location',
    longitude       Nullable(Float64) COMMENT 'visitor-supplied precise longitude | source: beacon | consent: precise_location',
    browser         LowCardinality(String) COMMENT 'browser family from a known list | source: User-Agent | consent: none',
    browser_version LowCardinality(String) COMMENT 'browser major version | source: User-Agent | consent: none',
    os              LowCardinality(String) COMMENT 'OS family from a known list | source: User-Agent | consent: none',
    os_version      LowCardinality(String) COMMENT 'OS major version | source: User-Agent | consent: none',
    device          LowCardinality(String) COMMENT 'desktop, mobile, tablet or other | source: User-Agent | consent: none',
    language        LowCardinality(String) COMMENT 'primary language subtag | source: beacon, Accept-Language | consent: none',
    screen_width    Nullable(UInt32) COMMENT 'screen width in CSS pixels | source: beacon | consent: none',
    screen_height   Nullable(UInt32) COMMENT 'screen height in CSS pixels | source: beacon | consent: none',
    engagement_ms   Nullable(UInt32) COMMENT 'time engaged with the page | source: beacon | consent: none',
    visitor_hash    UInt64 COMMENT 'cookieless daily visitor hash; its salt is destroyed the next day | source: request | consent: none',
    client_id       Nullable(String) TTL {pseudonym_ttl} COMMENT 'keyed pseudonym of the client id | source: beacon | consent: analytics',
    user_id         Nullable(String) TTL {pseudonym_ttl} COMMENT 'keyed pseudonym of the user id | source: beacon | consent: analytics',
    session_id      Nullable(String) TTL {pseudonym_ttl} COMMENT 'keyed pseudonym of the session id | source: beacon | consent: analytics',
    click_ids       Map(String, String) TTL {pseudonym_ttl} COMMENT 'advertising click ids as keyed pseudonyms | source: beacon URL | consent: analytics, marketing',
    consent         Array(LowCardinality(String)) COMMENT 'consent categories the row was stored under | source: beacon, cookie, site defaults | consent: none'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, toDate(ts), type, name, ts)
TTL {ttl}
SETTINGS non_replicated_deduplication_window = 1000;

-- Daily aggregates: no identifiers, kept longer than raw events. `visitors` is a uniq() sketch over the
-- daily-salted visitor hash, whose salt is destroyed the next day.
CREATE TABLE IF NOT EXISTS {database}.events_daily
(
    site      LowCardinality(String) COMMENT 'site id | source: events | consent: none',
    day       Date COMMENT 'UTC day | source: events | consent: none',
    page      String COMMENT 'URL path, segments that can carry an id replaced by :id | source: events | consent: none',
    source    LowCardinality(String) COMMENT 'utm_source as a campaign name, else referrer registrable domain, else (direct); (other) when neither fits | source: events | consent: none',
    country   LowCardinality(String) COMMENT 'ISO country code | source: events | consent: none',
    device    LowCardinality(String) COMMENT 'device class | source: events | consent: none',
    browser   LowCardinality(String) COMMENT 'browser family | source: events | consent: none',
    visitors  AggregateFunction(uniq, UInt64) COMMENT 'distinct daily visitors (sketch; use uniqMerge) | source: events | consent: none',
    pageviews SimpleAggregateFunction(sum, UInt64) COMMENT 'page views | source: events | consent: none',
    events    SimpleAggregateFunction(sum, UInt64) COMMENT 'custom events | source: events | consent: none'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, page, source, country, device, browser)
TTL {aggregate_ttl}
SETTINGS non_replicated_deduplication_window = 1000;

-- The rollup view: {rollup_page} and {rollup_source} generalise what could carry an identifier (see
-- config/schema.py: rollup_page, rollup_source). Its COMMENT names the definition; a store with an older
-- one is brought up to it at start-up (ALTER ... MODIFY QUERY, and its old rows rewritten).
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.events_daily_mv TO {database}.events_daily AS
SELECT
    site,
    toDate(ts) AS day,
    {rollup_page} AS page,
    {rollup_source} AS source,
    country,
    device,
    browser,
    uniqState(visitor_hash) AS visitors,
    toUInt64(countIf(type = 'pageview')) AS pageviews,
    toUInt64(countIf(type = 'event')) AS events
FROM {database}.events
GROUP BY site, day, page, source, country, device, browser
COMMENT '{rollup_version}';

-- Data-subject actions. Never a raw identifier: the subject is its keyed pseudonym.
CREATE TABLE IF NOT EXISTS {database}.audit_log
(
    time      DateTime64(3, 'UTC') COMMENT 'when the action ran | source: server | consent: none',
    action    LowCardinality(String) COMMENT 'export, delete, block, unblock or withdraw | source: admin or visitor | consent: none',
    site      LowCardinality(String) COMMENT 'site id | source: admin or visitor | consent: none',
    kind      LowCardinality(String) COMMENT 'client_id or user_id | source: admin or visitor | consent: none',
    pseudonym String COMMENT 'keyed pseudonym of the subject (current key) | source: server | consent: none',
    rows      UInt64 COMMENT 'rows exported or deleted | source: server | consent: none',
    actor     LowCardinality(String) COMMENT 'how the request arrived: admin-socket:uid=N, admin-http, admin-cli or visitor | source: server | consent: none'
)
ENGINE = MergeTree
ORDER BY (site, time)
TTL {audit_ttl};

-- Blocked subjects. `subject` is an HMAC of the identifier under the server secret (not a per-site key,
-- so a block survives key rotation). Latest row per subject wins.
CREATE TABLE IF NOT EXISTS {database}.suppressions
(
    site    LowCardinality(String) COMMENT 'site id | source: admin | consent: none',
    kind    LowCardinality(String) COMMENT 'client_id or user_id | source: admin | consent: none',
    subject String COMMENT 'HMAC of the identifier under the server secret | source: server | consent: none',
    blocked UInt8 COMMENT '1 blocked, 0 unblocked | source: admin | consent: none',
    updated DateTime64(3, 'UTC') COMMENT 'when the block changed | source: server | consent: none'
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (site, kind, subject);

-- Analyst keys (proxy/stats/keys.py). Only a SHA-256 of each key is stored, never the key; every replica
-- reads the same rows. Latest row per key id wins (a revocation is a newer row).
CREATE TABLE IF NOT EXISTS {database}.analyst_keys
(
    key_id   String COMMENT 'public part of an analyst key | source: admin | consent: none',
    key_hash String COMMENT 'SHA-256 of the whole key | source: server | consent: none',
    sites    Array(String) COMMENT 'site ids the key reads | source: admin | consent: none',
    label    String COMMENT 'free text naming the key holder, from the admin | source: admin | consent: none',
    created  DateTime64(3, 'UTC') COMMENT 'when the key was made | source: server | consent: none',
    revoked  UInt8 COMMENT '1 once revoked | source: admin | consent: none',
    updated  DateTime64(3, 'UTC') COMMENT 'when the row was written | source: server | consent: none'
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY key_id;

-- Requests per analyst key and minute, for the hourly rate limit shared by every replica.
CREATE TABLE IF NOT EXISTS {database}.analyst_requests
(
    key_id   String COMMENT 'public part of an analyst key | source: server | consent: none',
    minute   DateTime('UTC') COMMENT 'minute of the requests | source: server | consent: none',
    requests UInt64 COMMENT 'requests in that minute | source: server | consent: none'
)
ENGINE = SummingMergeTree
ORDER BY (key_id, minute)
TTL minute + INTERVAL 1 DAY;

-- Dashboard sessions (proxy/stats/sessions.py): the session cookie holds a random token; only its SHA-256 is
-- stored, with the analyst key it was opened with, so every replica knows every session. Latest row per
-- token wins (signing out is a newer row); a session also ends when its key is revoked.
CREATE TABLE IF NOT EXISTS {database}.dashboard_sessions
(
    token_hash String COMMENT 'SHA-256 of the session token | source: server | consent: none',
    key_id     String COMMENT 'analyst key the session was opened with | source: server | consent: none',
    created    DateTime64(3, 'UTC') COMMENT 'when the session was opened | source: server | consent: none',
    expires    DateTime64(3, 'UTC') COMMENT 'when it ends at the latest | source: server | consent: none',
    ended      UInt8 COMMENT '1 once signed out | source: server | consent: none',
    updated    DateTime64(3, 'UTC') COMMENT 'when the row was written | source: server | consent: none'
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY token_hash
TTL toDateTime(expires) + INTERVAL 1 DAY;

-- Visits of past UTC days, rebuilt from `events` by the store process (proxy/stats/visit_store.py) with the
-- one visit definition (proxy/stats/visits.py): one row per visitor and UTC day, the visits as arrays. A
-- rebuild writes a whole day under a new version, records it in visit_days, then deletes the older
-- versions; readers take only the recorded version of each day, so a day is never half old, half new. No
-- identifiers: the visitor is the daily hash, whose salt is destroyed the next day.
CREATE TABLE IF NOT EXISTS {database}.visits
(
    site            LowCardinality(String) COMMENT 'site id | source: events | consent: none',
    day             Date COMMENT 'UTC day of the daily visitor hash | source: events | consent: none',
    visitor_hash    UInt64 COMMENT 'cookieless daily visitor hash | source: events | consent: none',
    version         UInt64 COMMENT 'rebuild that wrote the row (ms since the epoch) | source: server | consent: none',
    country         LowCardinality(String) COMMENT 'ISO country code | source: events | consent: none',
    region          LowCardinality(String) COMMENT 'first-level region | source: events | consent: none',
    city            LowCardinality(String) COMMENT 'city, when stored | source: events | consent: none',
    device          LowCardinality(String) COMMENT 'device class | source: events | consent: none',
    browser         LowCardinality(String) COMMENT 'browser family | source: events | consent: none',
    browser_version LowCardinality(String) COMMENT 'browser major version | source: events | consent: none',
    os              LowCardinality(String) COMMENT 'OS family | source: events | consent: none',
    os_version      LowCardinality(String) COMMENT 'OS major version | source: events | consent: none',
    starts          Array(DateTime64(3, 'UTC')) COMMENT 'first event time of each visit | source: events | consent: none',
    pageviews       Array(UInt32) COMMENT 'page views per visit | source: events | consent: none',
    events          Array(UInt32) COMMENT 'page views and custom events per visit | source: events | consent: none',
    bounces         Array(UInt8) COMMENT '1 when the visit bounced | source: events | consent: none',
    durations       Array(UInt32) COMMENT 'seconds from first to last event of each visit | source: events | consent: none',
    entry_pages     Array(String) COMMENT 'entry page path of each visit | source: events | consent: none',
    exit_pages      Array(String) COMMENT 'exit page path of each visit | source: events | consent: none',
    ref_hosts       Array(String) COMMENT 'referrer host of each visit, empty when direct or internal | source: events | consent: none',
    utm_sources     Array(String) COMMENT 'utm_source of each visit | source: events | consent: none',
    utm_mediums     Array(String) COMMENT 'utm_medium of each visit | source: events | consent: none',
    utm_campaigns   Array(String) COMMENT 'utm_campaign of each visit | source: events | consent: none',
    utm_contents    Array(String) COMMENT 'utm_content of each visit | source: events | consent: none',
    utm_terms       Array(String) COMMENT 'utm_term of each visit | source: events | consent: none'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, version, visitor_hash)
TTL {visits_ttl};

-- Which rebuild of each day's visits is current, and how many events it was made from.
CREATE TABLE IF NOT EXISTS {database}.visit_days
(
    site    LowCardinality(String) COMMENT 'site id | source: events | consent: none',
    day     Date COMMENT 'UTC day | source: events | consent: none',
    version UInt64 COMMENT 'the current rebuild (ms since the epoch) | source: server | consent: none',
    events  UInt64 COMMENT 'events of the day when it was rebuilt | source: events | consent: none'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, day)
TTL {visits_ttl};

-- The URL's path, computed once at insert for the stats API's page breakdowns (a MATERIALIZED column:
-- not part of SELECT * or of the writer's INSERT; on rows stored before it existed it is computed on read).
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS page LowCardinality(String) MATERIALIZED path(url)
    COMMENT 'URL path (from url) | source: beacon | consent: none';

-- Shared state of the replicas (README "Running several replicas"). Not for analysts.
-- The day's visitor-hash salt, shared by every replica: the first to insert a day's row wins (the
-- insert's deduplication token is the day) and every replica reads the winner back. Stored wrapped
-- under privacy.pseudonym_secret; deleted the next day (the TTL only if no replica runs).
CREATE TABLE IF NOT EXISTS {database}.salts
(
    day     Date COMMENT 'UTC day whose visitors the salt hashes | source: server | consent: none',
    salt    String COMMENT 'random salt, wrapped under the pseudonym secret, deleted the next day | source: server | consent: none',
    created DateTime64(3, 'UTC') COMMENT 'when the replica that won drew it | source: server | consent: none'
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY day
TTL day + INTERVAL 2 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

-- Fingerprints of the secrets every replica must share: a replica whose secret gives another
-- fingerprint refuses to start. First writer wins; `beaconproxy migrate --pin-secrets` pins new ones.
CREATE TABLE IF NOT EXISTS {database}.secret_fingerprints
(
    name        LowCardinality(String) COMMENT 'which secret: pseudonym_secret, admin_token or site_key:<site> | source: server | consent: none',
    fingerprint String COMMENT 'keyed hash of the secret, never the secret | source: server | consent: none',
    version     UInt32 COMMENT 'raised by each deliberate re-pinning | source: server | consent: none',
    pinned      DateTime64(3, 'UTC') COMMENT 'when it was pinned | source: server | consent: none'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name
SETTINGS non_replicated_deduplication_window = 1000;

-- Heartbeats of the running replicas: their configuration hash (a rolling deploy with mixed settings
-- shows in /readyz and /metrics) and what their spools still hold.
CREATE TABLE IF NOT EXISTS {database}.replicas
(
    replica        String COMMENT 'replica: host name, port and a random id per start | source: server | consent: none',
    config_hash    LowCardinality(String) COMMENT 'hash of the settings replicas must agree on | source: server | consent: none',
    started        DateTime64(3, 'UTC') COMMENT 'when the replica started | source: server | consent: none',
    seen           DateTime64(3, 'UTC') COMMENT 'its last heartbeat | source: server | consent: none',
    spool_segments UInt32 COMMENT 'spooled segments for this store not yet shipped | source: server | consent: none',
    spool_bytes    UInt64 COMMENT 'bytes of those segments | source: server | consent: none',
    oldest_spooled_seconds Float64 COMMENT 'age of the oldest of them | source: server | consent: none',
    stopped        UInt8 COMMENT '1: the replica stopped gracefully after this heartbeat | source: server | consent: none'
)
ENGINE = ReplacingMergeTree(seen)
ORDER BY replica
TTL toDateTime(seen) + INTERVAL 7 DAY;

-- Deletions and withdrawals, recorded before the rows are deleted: a subject's events up to `cutoff`
-- that reach the store later, from any replica's spool, are not stored. Kept as long as a spooled
-- segment may wait (the events' retention).
CREATE TABLE IF NOT EXISTS {database}.subject_requests
(
    requested DateTime64(3, 'UTC') COMMENT 'when the request was recorded | source: server | consent: none',
    cutoff    DateTime64(3, 'UTC') COMMENT 'events of the subject up to this time are not stored | source: server | consent: none',
    action    LowCardinality(String) COMMENT 'delete or withdraw | source: admin or visitor | consent: none',
    site      LowCardinality(String) COMMENT 'site id | source: admin or visitor | consent: none',
    kind      LowCardinality(String) COMMENT 'client_id or user_id | source: admin or visitor | consent: none',
    pseudonym String COMMENT 'keyed pseudonym of the subject, under each key of the site | source: server | consent: none'
)
ENGINE = MergeTree
ORDER BY (site, kind, pseudonym)
TTL {request_ttl};
