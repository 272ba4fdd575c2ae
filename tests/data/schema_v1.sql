-- Frozen copy of schema.sql at version 1 (before rollups), to test the migration.
-- Times are integers: milliseconds since 1970-01-01 UTC.

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
    -- the bundle version: version_name up to the first ':'
    bundle           TEXT GENERATED ALWAYS AS (
        CASE WHEN instr(version_name, ':') > 0
             THEN substr(version_name, 1, instr(version_name, ':') - 1)
             ELSE version_name END
    ) VIRTUAL
);

-- A resent event (same device, action, device timestamp and version) is stored once.
CREATE UNIQUE INDEX IF NOT EXISTS "event#dedupe"
    ON event (app_id, device_id, action, device_ts, version_name)
    WHERE device_ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS "event#at" ON event (at);
CREATE INDEX IF NOT EXISTS "event#device_id#at" ON event (device_id, at);

-- Refused events, counted per arrival day (UTC), app, reason and action ('' when unknown).
CREATE TABLE IF NOT EXISTS refusal (
    day     TEXT    NOT NULL CHECK (day IS strftime('%Y-%m-%d', day)),
    app_id  TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    count   INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (day, app_id, reason, action)
) WITHOUT ROWID;

PRAGMA user_version = 1;
