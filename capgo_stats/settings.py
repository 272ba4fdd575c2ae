"""Every STATS_* setting: its default, its type, and the checks made before the app starts.

A setting comes from create_app(test_config), else from the environment variable of the same
name, else from DEFAULTS. A value that cannot be used stops the start with a message that says
what to do (SettingError), rather than a server that answers and loses data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    "STATS_DB": "stats.db",
    "STATS_DATABASE_URL": "",
    "STATS_PG_POOL_SIZE": 8,
    "STATS_EXTRA_ACTIONS": "",
    "STATS_MAX_BODY": 4 * 1024 * 1024,
    "STATS_BUSY_TIMEOUT_MS": 5000,
    "STATS_READ_TIMEOUT_MS": 10000,
    "STATS_DURABLE": False,
    "STATS_RETENTION_DAYS": 0,
    "STATS_FOLD_INTERVAL_S": 1,
    "STATS_MAX_DB_MB": 0,
    "STATS_READ_TOKEN": "",
    "STATS_INGEST_KEY": "",
    "STATS_APP_IDS": "",
    "STATS_HASH_SECRET": "",
    "STATS_HASH_SECRET_CHANGED": False,
    "STATS_ALERT_SECRET": "",
    "STATS_ALERT_WEBHOOK": "",
    "STATS_ALERT_INTERVAL_S": 300,
    "STATS_ALERT_SILENT_HOURS": "",
    "STATS_ALERT_MAX_DEVICE_FAIL_RATE": "",
    "STATS_ALERT_MAX_ISSUE_RATE": "",
    "STATS_ALERT_MIN_DEVICES": 1,
    "STATS_LOG_LEVEL": "INFO",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The smallest STATS_MAX_BODY the server starts with. Below what a full batch from the plugin
# (200 events) takes, every such POST gets a 413, which the plugin drops for good. A real event
# is 350 to 460 bytes of JSON (tests/support/payloads.py), so about 92 KB a batch; 256 KiB
# leaves room for events of 1.3 KB each (long custom ids, some metadata).
MIN_MAX_BODY = 256 * 1024
# The numeric settings a negative value means nothing for: refused rather than guessed at.
NOT_NEGATIVE = (
    "STATS_BUSY_TIMEOUT_MS",
    "STATS_READ_TIMEOUT_MS",
    "STATS_RETENTION_DAYS",
    "STATS_MAX_DB_MB",
)
URL_SCHEMES = ("postgresql://", "postgres://")


class SettingError(ValueError):
    """A setting whose value the server cannot start with."""


def from_env(name: str, default: Any) -> Any:
    """The environment's value for a setting, cast to the type of its default."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingError(f"{name} must be a whole number, not {raw!r}") from None
    return raw


def alert_limits(settings: dict[str, Any]) -> dict[str, Any]:
    """The limits of the server's own alert check (STATS_ALERT_*), parsed; {} when off."""
    url = settings["STATS_ALERT_WEBHOOK"].strip()
    if not url:
        return {}
    if not url.lower().startswith(("http://", "https://")):
        raise SettingError(f"STATS_ALERT_WEBHOOK must be an http:// or https:// URL, not {url!r}.")
    limits = {
        "silent_hours": _number("STATS_ALERT_SILENT_HOURS", settings, percent=False),
        "max_device_fail_rate": _number("STATS_ALERT_MAX_DEVICE_FAIL_RATE", settings),
        "max_issue_rate": _number("STATS_ALERT_MAX_ISSUE_RATE", settings),
    }
    if all(value is None for value in limits.values()):
        raise SettingError(
            "STATS_ALERT_WEBHOOK is set but no limit is: set STATS_ALERT_SILENT_HOURS,"
            " STATS_ALERT_MAX_DEVICE_FAIL_RATE or STATS_ALERT_MAX_ISSUE_RATE."
        )
    if settings["STATS_ALERT_MIN_DEVICES"] < 1 or settings["STATS_ALERT_INTERVAL_S"] < 1:
        raise SettingError("STATS_ALERT_MIN_DEVICES and STATS_ALERT_INTERVAL_S must be 1 or more.")
    return {**limits, "min_devices": settings["STATS_ALERT_MIN_DEVICES"]}


def _number(name: str, settings: dict[str, Any], percent: bool = True) -> float | None:
    """A limit setting: empty is none; a rate may be written 0.05 or 5%."""
    text = str(settings[name]).strip()
    if not text:
        return None
    try:
        value = float(text[:-1]) / 100 if percent and text.endswith("%") else float(text)
    except ValueError:
        raise SettingError(
            f"{name} must be a number{' or a percentage' * percent}, not {text!r}."
        ) from None
    if value < 0 or (percent and value > 1) or (not percent and value == 0):
        raise SettingError(f"{name} is out of range: {text!r}.")
    return value


def check_hash_secret(kept: int, mark: int, path: str) -> None:
    """Refuse a STATS_HASH_SECRET other than the one the database was written with: every
    device would be counted again under another id (two servers with two secrets, too)."""
    if kept != mark:
        raise SettingError(
            f"{path} was written with {'another' if kept else 'no'} STATS_HASH_SECRET: with this"
            " one every device would be counted again under a new id. Set the secret it was"
            " written with; to change it on purpose (devices count anew from then on), start"
            " once with STATS_HASH_SECRET_CHANGED=1."
        )


def load(test_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting: the environment over the defaults, then test_config over both; checked."""
    settings = {name: from_env(name, default) for name, default in DEFAULTS.items()}
    settings.update(test_config or {})
    check(settings)
    return settings


def check(settings: dict[str, Any]) -> None:
    """Refuse values the server cannot run with, or would lose data with; normalise the rest."""
    _check_numbers(settings)
    _check_database(settings)
    _check_log_level(settings)
    alert_limits(settings)  # refused here, before any database is touched


def _check_numbers(settings: dict[str, Any]) -> None:
    """Refuse a STATS_MAX_BODY too small for a plugin batch, and meaningless negative values."""
    for name in NOT_NEGATIVE:
        if settings[name] < 0:
            raise SettingError(
                f"{name} cannot be negative ({settings[name]}); set 0 or more,"
                f" or leave it unset for the default, {DEFAULTS[name]}."
            )
    if settings["STATS_MAX_BODY"] < MIN_MAX_BODY:
        raise SettingError(
            f"STATS_MAX_BODY is {settings['STATS_MAX_BODY']} bytes: a full batch of 200 events"
            " from the plugin would get a 413, which the plugin drops for good. Set"
            f" STATS_MAX_BODY to {MIN_MAX_BODY} or more (256 KiB), or leave it unset for the"
            f" default, {DEFAULTS['STATS_MAX_BODY']}."
        )


def _check_database(settings: dict[str, Any]) -> None:
    """Refuse a STATS_DATABASE_URL that is not PostgreSQL's, and SQLite-only settings with it."""
    url = settings["STATS_DATABASE_URL"] = str(settings["STATS_DATABASE_URL"]).strip()
    if not url:
        return
    if not url.lower().startswith(URL_SCHEMES):
        raise SettingError(
            "STATS_DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:port/"
            "database); leave it unset to keep the SQLite file at STATS_DB."
        )
    if settings["STATS_MAX_DB_MB"]:
        raise SettingError(
            "STATS_MAX_DB_MB caps a SQLite file and does nothing on PostgreSQL: unset it, and"
            " cap the database's size on the PostgreSQL server instead."
        )
    if settings["STATS_PG_POOL_SIZE"] < 1:
        raise SettingError("STATS_PG_POOL_SIZE must be 1 or more (connections per process).")


def _check_log_level(settings: dict[str, Any]) -> None:
    """Refuse an unknown STATS_LOG_LEVEL; store it upper-cased."""
    level = str(settings["STATS_LOG_LEVEL"]).strip().upper()
    if level not in LOG_LEVELS:
        raise SettingError(
            f"STATS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}."
        )
    settings["STATS_LOG_LEVEL"] = level
