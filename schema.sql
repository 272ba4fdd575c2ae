-- capgo-stats schema, version 5. Applied on first use and by `flask init-db`; safe to apply twice.
-- Times are integers: milliseconds since 1970-01-01 UTC.
--
-- Raw events are the truth. Every other table is derived from them by the fold
-- (capgo_stats/counting.py holds the rules), in batches, in the order of event.id: the fold's
-- position is in `meta`. No triggers: ingest writes the raw event and nothing else.

-- SQLite gives a new event the highest id + 1, so ids follow the order of commits. A delete that
-- takes the newest events lowers the fold's position to the highest id left (sqlite_fold.py), so
-- an id handed out again is still after the position.
CREATE TABLE IF NOT EXISTS event (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,  -- event time: the device clock when plausible, else arrival
    received_at      INTEGER NOT NULL,  -- arrival time at this server
    device_ts        INTEGER,           -- the device's "timestamp" as sent (plugin >= 8.42)
    app_id           TEXT    NOT NULL CHECK (app_id <> ''),
    device_id        TEXT    NOT NULL CHECK (device_id <> ''),  -- lowercased
    action           TEXT    NOT NULL CHECK (action <> ''),
    platform         TEXT    NOT NULL DEFAULT '',
    version_name     TEXT    NOT NULL DEFAULT '',  -- as sent, may be "<version>:<file path>"
    old_version_name TEXT,
    custom_id        TEXT,              -- trimmed; NULL when empty
    version_build    TEXT,
    version_code     TEXT,
    version_os       TEXT,
    plugin_version   TEXT,
    is_emulator      INTEGER NOT NULL DEFAULT 0 CHECK (is_emulator IN (0, 1)),
    is_prod          INTEGER NOT NULL DEFAULT 1 CHECK (is_prod IN (0, 1)),
    default_channel  TEXT,
    key_id           TEXT,
    install_source   TEXT,
    metadata         TEXT,              -- JSON object of strings
    fingerprint      INTEGER,           -- hash of every field the device sent; NULL without device_ts
    -- the bundle version: version_name up to the first ':'
    bundle           TEXT GENERATED ALWAYS AS (
        CASE WHEN instr(version_name, ':') > 0
             THEN substr(version_name, 1, instr(version_name, ':') - 1)
             ELSE version_name END
    ) VIRTUAL
);

-- A resent event (same device, same device timestamp, same content) is stored once: the
-- fingerprint covers every field the device sent, so events that differ in any of them (five
-- webview_resource_error in one millisecond, each with its own metadata.url) are all kept.
-- Events without a device timestamp (plugins < 8.42) never clash: NULLs are distinct in a UNIQUE
-- index. Led by device_id, the same index finds one device's events.
CREATE UNIQUE INDEX IF NOT EXISTS "event#device_id#dedupe"
    ON event (device_id, device_ts, fingerprint);
CREATE INDEX IF NOT EXISTS "event#app_id#at" ON event (app_id, at);
CREATE INDEX IF NOT EXISTS "event#custom_id#at" ON event (custom_id, at)
    WHERE custom_id IS NOT NULL;

-- Refused events, counted per arrival day (UTC), app, reason and action ('' when unknown).
CREATE TABLE IF NOT EXISTS refusal (
    day     TEXT    NOT NULL CHECK (day IS strftime('%Y-%m-%d', day)),
    app_id  TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    count   INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (day, app_id, reason, action)
) WITHOUT ROWID;

-- The fold's state: `fold_position`, the id of the last event folded into the tables below, and
-- `pruned_before`, the event time before which raw events were deleted (0: never).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('fold_position', 0), ('pruned_before', 0);

-- Rollups: folded from the raw events, so reports never scan raw events and survive
-- `flask prune`. A resent duplicate is never stored, so it is never folded. `prod` is 1 for an
-- event from a production build on a real device (is_prod and not is_emulator): the events
-- Capgo counts installs and failures from.

-- Events per hour (hour = at / 3600000) and per day (day = at / 86400000), UTC.
CREATE TABLE IF NOT EXISTS rollup_hour (
    app_id   TEXT    NOT NULL,
    hour     INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (app_id, hour, action, bundle, platform, prod)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, action, bundle, platform, prod)
) WITHOUT ROWID;

-- Failure events (action ending in _fail) per hour, with what failures are broken down by.
CREATE TABLE IF NOT EXISTS failure_hour (
    app_id         TEXT    NOT NULL,
    hour           INTEGER NOT NULL,
    action         TEXT    NOT NULL,
    bundle         TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    plugin_version TEXT    NOT NULL,
    version_os     TEXT    NOT NULL,
    prod           INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (app_id, hour, action, bundle, platform, plugin_version, version_os, prod)
) WITHOUT ROWID;

-- The same per day (schema 3): whole days of a failure report read this, not 24 hourly rows.
CREATE TABLE IF NOT EXISTS failure_day (
    app_id         TEXT    NOT NULL,
    day            INTEGER NOT NULL,
    action         TEXT    NOT NULL,
    bundle         TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    plugin_version TEXT    NOT NULL,
    version_os     TEXT    NOT NULL,
    prod           INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, action, bundle, platform, plugin_version, version_os, prod)
) WITHOUT ROWID;

-- A `set` whose old_version_name names another bundle: that old bundle lost a device.
CREATE TABLE IF NOT EXISTS uninstall_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,  -- the bundle replaced
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, bundle, platform, prod)
) WITHOUT ROWID;

-- Each device's latest state. `bundle` is the bundle it runs: the bundle of its latest event
-- that reports the running bundle (not a failure, not a download, set_next, delete,
-- uninstall, checksum_required or insufficient_disk_space, and with a version_name).
CREATE TABLE IF NOT EXISTS device (
    app_id     TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    platform   TEXT    NOT NULL,
    prod       INTEGER NOT NULL,  -- of its latest event
    bundle     TEXT,
    bundle_at  INTEGER,           -- event time of the event that set `bundle`
    PRIMARY KEY (app_id, device_id)
) WITHOUT ROWID;
-- No index on last_seen: it changes with every event, and keeping an index on it doubled the
-- cost of this upsert (bench/RESULTS.md). Active devices are counted by device_hour instead.

-- Devices seen per day: device_day remembers who was counted, active_day holds the counts.
CREATE TABLE IF NOT EXISTS device_day (
    app_id    TEXT    NOT NULL,
    day       INTEGER NOT NULL,
    device_id TEXT    NOT NULL,
    prod      INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, device_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS active_day (
    app_id  TEXT    NOT NULL,
    day     INTEGER NOT NULL,
    prod    INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, prod)
) WITHOUT ROWID;

-- Devices counted by the bundle they run and by the hour of their latest event (schema 4), moved
-- by the fold whenever it changes a device, so version shares and active devices read a few rows
-- however many devices there are. A count moves when a device changes bundle, platform, prod or hour.
CREATE TABLE IF NOT EXISTS device_bundle (
    app_id   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,  -- '' for devices that have not reported a bundle yet
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, platform, prod, bundle)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS device_hour (
    app_id   TEXT    NOT NULL,
    hour     INTEGER NOT NULL,  -- of the device's last_seen: last_seen / 3600000
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, hour, platform, prod)
) WITHOUT ROWID;

-- Release health (schema 5). A device's record of each version it named: the first event's
-- platform and prod (its figures for the version count under them), its install outcome
-- (0 none, 1 failed, 2 installed: a set), and the earliest download start, set, event that
-- ran the version and app-health issue. The fold tells a first time from a repeat by it.
CREATE TABLE IF NOT EXISTS version_device (
    app_id      TEXT    NOT NULL,
    bundle      TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    first_at    INTEGER NOT NULL,
    platform    TEXT    NOT NULL,
    prod        INTEGER NOT NULL,
    outcome     INTEGER NOT NULL,
    download_at INTEGER,
    set_at      INTEGER,
    run_at      INTEGER,
    issue_at    INTEGER,
    PRIMARY KEY (app_id, bundle, device_id)
) WITHOUT ROWID;

-- Devices per version by outcome ('installed', or 'failed' and never installed).
CREATE TABLE IF NOT EXISTS outcome_devices (
    app_id   TEXT    NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    outcome  TEXT    NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, bundle, platform, prod, outcome)
) WITHOUT ROWID;

-- Devices per version by the UTC day of their first event running it (kind 'active') and of
-- their first app-health issue on it (kind 'issue').
CREATE TABLE IF NOT EXISTS reach_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, bundle, platform, prod, kind)
) WITHOUT ROWID;

-- Histograms of durations: bucket = floor(8 * log2(ms)). install_day counts devices by the day
-- of their first set of the version (first download start to that set, within 2 hours);
-- launch_day counts app_launch_ready events by their metadata.duration_ms.
CREATE TABLE IF NOT EXISTS install_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    bucket   INTEGER NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, bundle, platform, prod, bucket)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS launch_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    bucket   INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, bundle, platform, prod, bucket)
) WITHOUT ROWID;

-- The bundle each device last ran on each UTC day (by event time, among the events that report
-- the bundle a device runs), and the devices per day and bundle it makes: version adoption.
CREATE TABLE IF NOT EXISTS adoption_device (
    app_id    TEXT    NOT NULL,
    day       INTEGER NOT NULL,
    device_id TEXT    NOT NULL,
    platform  TEXT    NOT NULL,
    prod      INTEGER NOT NULL,
    bundle    TEXT    NOT NULL,
    bundle_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, device_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS adoption_day (
    app_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    platform TEXT    NOT NULL,
    prod     INTEGER NOT NULL,
    bundle   TEXT    NOT NULL,
    devices  INTEGER NOT NULL,
    PRIMARY KEY (app_id, day, platform, prod, bundle)
) WITHOUT ROWID;

-- The alert conditions `flask alerts` has sent and that still held at its last check (not
-- derived from events: a condition that clears is deleted, so it is sent again if it recurs).
CREATE TABLE IF NOT EXISTS alert_state (
    app_id    TEXT    NOT NULL,
    version   TEXT    NOT NULL,  -- '' for an app-wide condition (silent)
    condition TEXT    NOT NULL,  -- silent, device_fail_rate or issue_rate
    raised_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, version, condition)
) WITHOUT ROWID;

PRAGMA user_version = 5;
