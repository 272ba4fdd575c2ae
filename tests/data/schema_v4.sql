-- Frozen copy of schema.sql at version 4 (rollups kept by triggers), to test the migration.
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

-- A resent event (same device, app, action, device timestamp and version) is stored once.
-- Events without a device timestamp (plugins < 8.42) never clash: NULLs are distinct in a
-- UNIQUE index. Led by device_id, the same index finds one device's events.
CREATE UNIQUE INDEX IF NOT EXISTS "event#device_id#dedupe"
    ON event (device_id, app_id, action, device_ts, version_name);
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

-- Rollups: kept up to date by the trigger below, in the same transaction as each raw insert, so
-- reports never scan raw events and survive `flask prune`. A resent duplicate is never inserted,
-- so it never fires the trigger. `prod` is 1 for an event from a production build on a real
-- device (is_prod and not is_emulator): the events Capgo counts installs and failures from.

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

-- Devices counted by the bundle they run and by the hour of their latest event (schema 4), kept
-- by the triggers on device below, so version shares and active devices read a few rows however
-- many devices there are. A count moves when a device changes bundle, platform, prod or hour.
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

CREATE TRIGGER IF NOT EXISTS "device#count" AFTER INSERT ON device
BEGIN
    INSERT INTO device_bundle (app_id, platform, prod, bundle, devices)
    VALUES (NEW.app_id, NEW.platform, NEW.prod, coalesce(NEW.bundle, ''), 1)
    ON CONFLICT (app_id, platform, prod, bundle) DO UPDATE SET devices = devices + 1;

    INSERT INTO device_hour (app_id, hour, platform, prod, devices)
    VALUES (NEW.app_id, NEW.last_seen / 3600000, NEW.platform, NEW.prod, 1)
    ON CONFLICT (app_id, hour, platform, prod) DO UPDATE SET devices = devices + 1;
END;

CREATE TRIGGER IF NOT EXISTS "device#bundle" AFTER UPDATE ON device
WHEN OLD.bundle IS NOT NEW.bundle OR OLD.platform <> NEW.platform OR OLD.prod <> NEW.prod
BEGIN
    UPDATE device_bundle SET devices = devices - 1
    WHERE app_id = OLD.app_id AND platform = OLD.platform AND prod = OLD.prod
      AND bundle = coalesce(OLD.bundle, '');

    INSERT INTO device_bundle (app_id, platform, prod, bundle, devices)
    VALUES (NEW.app_id, NEW.platform, NEW.prod, coalesce(NEW.bundle, ''), 1)
    ON CONFLICT (app_id, platform, prod, bundle) DO UPDATE SET devices = devices + 1;
END;

CREATE TRIGGER IF NOT EXISTS "device#hour" AFTER UPDATE ON device
WHEN OLD.last_seen / 3600000 <> NEW.last_seen / 3600000
  OR OLD.platform <> NEW.platform OR OLD.prod <> NEW.prod
BEGIN
    UPDATE device_hour SET devices = devices - 1
    WHERE app_id = OLD.app_id AND hour = OLD.last_seen / 3600000
      AND platform = OLD.platform AND prod = OLD.prod;

    INSERT INTO device_hour (app_id, hour, platform, prod, devices)
    VALUES (NEW.app_id, NEW.last_seen / 3600000, NEW.platform, NEW.prod, 1)
    ON CONFLICT (app_id, hour, platform, prod) DO UPDATE SET devices = devices + 1;
END;

CREATE TRIGGER IF NOT EXISTS "device#uncount" AFTER DELETE ON device
BEGIN
    UPDATE device_bundle SET devices = devices - 1
    WHERE app_id = OLD.app_id AND platform = OLD.platform AND prod = OLD.prod
      AND bundle = coalesce(OLD.bundle, '');

    UPDATE device_hour SET devices = devices - 1
    WHERE app_id = OLD.app_id AND hour = OLD.last_seen / 3600000
      AND platform = OLD.platform AND prod = OLD.prod;
END;

CREATE TRIGGER IF NOT EXISTS "device_day#count" AFTER INSERT ON device_day
BEGIN
    INSERT INTO active_day (app_id, day, prod, devices) VALUES (NEW.app_id, NEW.day, NEW.prod, 1)
    ON CONFLICT (app_id, day, prod) DO UPDATE SET devices = devices + 1;
END;

CREATE TRIGGER IF NOT EXISTS "event#rollup" AFTER INSERT ON event
BEGIN
    INSERT INTO rollup_hour (app_id, hour, action, bundle, platform, prod, count)
    VALUES (NEW.app_id, NEW.at / 3600000, NEW.action, NEW.bundle, NEW.platform,
            NEW.is_prod AND NOT NEW.is_emulator, 1)
    ON CONFLICT (app_id, hour, action, bundle, platform, prod) DO UPDATE SET count = count + 1;

    INSERT INTO rollup_day (app_id, day, action, bundle, platform, prod, count)
    VALUES (NEW.app_id, NEW.at / 86400000, NEW.action, NEW.bundle, NEW.platform,
            NEW.is_prod AND NOT NEW.is_emulator, 1)
    ON CONFLICT (app_id, day, action, bundle, platform, prod) DO UPDATE SET count = count + 1;

    INSERT INTO failure_hour
        (app_id, hour, action, bundle, platform, plugin_version, version_os, prod, count)
    SELECT NEW.app_id, NEW.at / 3600000, NEW.action, NEW.bundle, NEW.platform,
           coalesce(NEW.plugin_version, ''), coalesce(NEW.version_os, ''),
           NEW.is_prod AND NOT NEW.is_emulator, 1
    WHERE NEW.action LIKE '%\_fail' ESCAPE '\'
    ON CONFLICT (app_id, hour, action, bundle, platform, plugin_version, version_os, prod)
    DO UPDATE SET count = count + 1;

    INSERT INTO failure_day
        (app_id, day, action, bundle, platform, plugin_version, version_os, prod, count)
    SELECT NEW.app_id, NEW.at / 86400000, NEW.action, NEW.bundle, NEW.platform,
           coalesce(NEW.plugin_version, ''), coalesce(NEW.version_os, ''),
           NEW.is_prod AND NOT NEW.is_emulator, 1
    WHERE NEW.action LIKE '%\_fail' ESCAPE '\'
    ON CONFLICT (app_id, day, action, bundle, platform, plugin_version, version_os, prod)
    DO UPDATE SET count = count + 1;

    INSERT INTO uninstall_day (app_id, day, bundle, platform, prod, count)
    SELECT NEW.app_id, NEW.at / 86400000, old_bundle, NEW.platform,
           NEW.is_prod AND NOT NEW.is_emulator, 1
    FROM (SELECT CASE WHEN instr(NEW.old_version_name, ':') > 0
                      THEN substr(NEW.old_version_name, 1, instr(NEW.old_version_name, ':') - 1)
                      ELSE NEW.old_version_name END AS old_bundle)
    WHERE NEW.action = 'set' AND old_bundle <> '' AND old_bundle <> NEW.bundle
    ON CONFLICT (app_id, day, bundle, platform, prod) DO UPDATE SET count = count + 1;

    INSERT INTO device
        (app_id, device_id, first_seen, last_seen, platform, prod, bundle, bundle_at)
    VALUES (NEW.app_id, NEW.device_id, NEW.at, NEW.at, NEW.platform,
            NEW.is_prod AND NOT NEW.is_emulator,
            iif(NEW.version_name <> '' AND NEW.action NOT LIKE '%\_fail' ESCAPE '\'
                AND NEW.action NOT LIKE 'download\_%' ESCAPE '\'
                AND NEW.action NOT IN ('set_next', 'delete', 'uninstall', 'checksum_required',
                                       'insufficient_disk_space'), NEW.bundle, NULL),
            iif(NEW.version_name <> '' AND NEW.action NOT LIKE '%\_fail' ESCAPE '\'
                AND NEW.action NOT LIKE 'download\_%' ESCAPE '\'
                AND NEW.action NOT IN ('set_next', 'delete', 'uninstall', 'checksum_required',
                                       'insufficient_disk_space'), NEW.at, NULL))
    ON CONFLICT (app_id, device_id) DO UPDATE SET
        first_seen = min(first_seen, excluded.first_seen),
        last_seen  = max(last_seen, excluded.last_seen),
        platform   = iif(excluded.last_seen >= last_seen, excluded.platform, platform),
        prod       = iif(excluded.last_seen >= last_seen, excluded.prod, prod),
        bundle     = iif(excluded.bundle_at >= coalesce(bundle_at, 0), excluded.bundle, bundle),
        bundle_at  = iif(excluded.bundle_at >= coalesce(bundle_at, 0), excluded.bundle_at, bundle_at);

    INSERT INTO device_day (app_id, day, device_id, prod)
    VALUES (NEW.app_id, NEW.at / 86400000, NEW.device_id, NEW.is_prod AND NOT NEW.is_emulator)
    ON CONFLICT (app_id, day, device_id) DO NOTHING;
END;

PRAGMA user_version = 4;
