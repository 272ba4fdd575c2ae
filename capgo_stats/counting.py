"""The counting rules, each written once: what is prod, an install, an uninstall, a failure.

Capgo's rules (docs/figures.md says each in words): an install is a `set` from a production build
on a real device, a failure an action ending in _fail except the legacy download_fail of old
plugins, an uninstall a `set` that replaced another bundle. Pure functions over plain values: the
reports, the raw event list's `counts_as` and the figure definitions all use these.
"""

from __future__ import annotations

import re
from typing import Any

# Not bundles: the bundle inside the native app, and "no bundle known".
NOT_BUNDLES = ("builtin", "unknown")

_VERSION = re.compile(
    r"[vV]?(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(\D.*)?", re.DOTALL | re.ASCII
)


def parse_version(text: Any) -> tuple[int, int, int, int] | None:
    """A plugin version as (major, minor, patch, release), or None when it is not one.

    release is 0 for a pre-release ("7.17.0-beta.1", "7.17.0rc1"), which sorts before its
    release (1); build metadata and extra parts ("+b5", ".4") are ignored.
    """
    if not isinstance(text, str):
        return None
    match = _VERSION.fullmatch(text.strip())
    if not match:
        return None
    major, minor, patch, rest = match.groups()
    rest = rest or ""
    pre_release = rest[:1] == "-" or rest[:1].isalpha()
    return int(major), int(minor or 0), int(patch or 0), 0 if pre_release else 1


def download_fail_is_legacy(plugin_version: str | None, platform: str = "") -> bool:
    """True when a download_fail comes from a plugin that sent it for "nothing to download".

    Plugins before 7.17.0 did (6.x before 6.14.25). The Electron updater numbers its releases
    apart (0.0.x) and never did. An unreadable or missing version is taken as a real failure.
    """
    if platform == "electron":
        return False
    version = parse_version(plugin_version)
    if version is None:
        return False
    return version < ((6, 14, 25, 1) if version[0] == 6 else (7, 17, 0, 1))


def counts_as_failure(action: str, plugin_version: str | None, platform: str = "") -> bool:
    """An action ending in _fail, except a legacy download_fail (see download_fail_is_legacy)."""
    if not action.endswith("_fail"):
        return False
    return not (action == "download_fail" and download_fail_is_legacy(plugin_version, platform))


def version_group(bundle: str | None) -> str:
    """The row a bundle is counted in: itself, or builtin / unknown, which are not bundles."""
    if bundle == "builtin":
        return "builtin"
    if not bundle or bundle == "unknown":
        return "unknown"
    return bundle


def counts_as(row: dict, include_dev: bool = False) -> list[str]:
    """The figures a raw event adds one to: install, uninstall (of old_version_name), failure."""
    if not include_dev and (not row["is_prod"] or row["is_emulator"]):
        return []
    figures = []
    if row["action"] == "set":
        figures.append("install")
        old = (row["old_version_name"] or "").split(":", 1)[0]
        if old and old != row["bundle"]:
            figures.append("uninstall")
    if counts_as_failure(row["action"], row["plugin_version"], row["platform"]):
        figures.append("failure")
    return figures
