-- Read-only analyst access to a REMOTE ClickHouse, for BI tools (Grafana, Superset, Metabase).
-- Run as an admin of that server after filling in the placeholders:
--   {database}  the proxy's database (clickhouse.database, "beacon")
--   {site}      the one site this role reads (repeat the row-policy block per site and role)
--   {password}  the analyst user's password
-- What it grants: SELECT on the anonymised columns of `events` (never ip, client_id, user_id, session_id,
-- click_ids, latitude or longitude) and on the `events_daily` aggregates, only rows of {site}; nothing on
-- audit_log, suppressions, analyst_keys or analyst_requests. A settings profile makes every session
-- read-only with a time limit the tools may lower but not raise, and a quota bounds the load.
-- On the embedded store (chDB) there are no users: there the stats API is the analysts' only way in.

CREATE SETTINGS PROFILE IF NOT EXISTS beacon_analyst_profile SETTINGS
    readonly = 1,
    max_execution_time = 30 MAX 30 CHANGEABLE_IN_READONLY,
    max_result_rows = 100000,
    result_overflow_mode = 'throw',
    max_threads = 2;

CREATE QUOTA IF NOT EXISTS beacon_analyst_quota
    FOR INTERVAL 1 hour MAX queries = 600, execution_time = 600;

CREATE ROLE IF NOT EXISTS beacon_analyst_{site};

GRANT SELECT(site, ts, type, name, url, referrer, title, utm_source, utm_medium, utm_campaign, utm_term,
             utm_content, props, country, region, city, browser, browser_version, os, os_version, device,
             language, screen_width, screen_height, engagement_ms, visitor_hash, consent)
    ON {database}.events TO beacon_analyst_{site};

GRANT SELECT ON {database}.events_daily TO beacon_analyst_{site};

CREATE ROW POLICY IF NOT EXISTS beacon_analyst_{site}_events ON {database}.events
    FOR SELECT USING site = '{site}' TO beacon_analyst_{site};

CREATE ROW POLICY IF NOT EXISTS beacon_analyst_{site}_daily ON {database}.events_daily
    FOR SELECT USING site = '{site}' TO beacon_analyst_{site};

CREATE USER IF NOT EXISTS analyst_{site} IDENTIFIED WITH sha256_password BY '{password}'
    SETTINGS PROFILE 'beacon_analyst_profile'
    DEFAULT ROLE beacon_analyst_{site};

GRANT beacon_analyst_{site} TO analyst_{site};

ALTER QUOTA beacon_analyst_quota TO analyst_{site};
