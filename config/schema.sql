-- Beacon Proxy storage. Applied at start-up, idempotently; {database} and {retention_days} are filled in
-- from settings. Column names are a contract with analysts: add, never rename.
CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id        UUID,
    site            LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    type            LowCardinality(String),
    name            String,
    url             String,
    referrer        String,
    title           String,
    utm_source      String,
    utm_medium      String,
    utm_campaign    String,
    utm_term        String,
    utm_content     String,
    props           Map(String, String),
    ip              String COMMENT 'truncated client IP (IPv4 /24, IPv6 /48 by default)',
    country         LowCardinality(String),
    region          LowCardinality(String),
    city            LowCardinality(String),
    latitude        Nullable(Float64) COMMENT 'only with precise_location consent',
    longitude       Nullable(Float64) COMMENT 'only with precise_location consent',
    browser         LowCardinality(String),
    browser_version LowCardinality(String),
    os              LowCardinality(String),
    os_version      LowCardinality(String),
    device          LowCardinality(String),
    language        LowCardinality(String),
    screen_width    Nullable(UInt32),
    screen_height   Nullable(UInt32),
    engagement_ms   Nullable(UInt32),
    visitor_hash    UInt64 COMMENT 'daily-salted cookieless hash; the salt is destroyed the next day',
    client_id       Nullable(String) COMMENT 'keyed pseudonym, only with analytics consent',
    user_id         Nullable(String) COMMENT 'keyed pseudonym, only with analytics consent',
    session_id      Nullable(String) COMMENT 'keyed pseudonym, only with analytics consent',
    click_ids       Map(String, String) COMMENT 'keyed pseudonyms, only with analytics and marketing consent',
    consent         Array(LowCardinality(String)) COMMENT 'consent categories the row was stored under'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, toDate(ts), type, name, ts)
TTL {ttl}
SETTINGS non_replicated_deduplication_window = 1000;
