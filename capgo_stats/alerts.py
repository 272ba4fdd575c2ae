"""Alerts: check the figures once, and POST one signed JSON message per condition that is new.

A condition is an app gone silent, or a version whose device fail rate or issue rate has a
Wilson lower bound above its limit (as `flask gate` judges them). Which conditions were already
sent is kept in the database (alert_state), so each is sent once while it lasts; once it clears
it is forgotten, and sent again if it comes back. No Flask, no SQL: the store keeps the state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from capgo_stats import reports
from capgo_stats.counting import NOT_BUNDLES
from capgo_stats.filters import Filters
from capgo_stats.protocol import HOUR_MS
from capgo_stats.store import Store

# Apps a check judges: the ALERT_APPS with the most events, as /metrics and the page name them,
# and any with an alert still held. Made-up app ids (anyone with the app can send them) cannot
# make the check read without bound, nor push out an app that has real traffic.
ALERT_APPS = 100
SIGNATURE_HEADER = "X-Capgo-Stats-Signature"
TIMEOUT_S = 10
AlertKey = tuple[str, str, str]  # (app_id, version or "", condition)
Send = Callable[[str, bytes, dict[str, str]], None]


@dataclass(frozen=True)
class Limits:
    """What `flask alerts` checks: each limit None when not asked for."""

    silent_hours: float | None = None
    max_device_fail_rate: float | None = None
    max_issue_rate: float | None = None
    min_devices: int = 1
    confidence: float = 0.95


def conditions(store: Store, limits: Limits, now: int) -> dict[AlertKey, dict]:
    """Every condition that holds now, over the apps checked, with the message that says it."""
    found: dict[AlertKey, dict] = {}
    for app_id in checked_apps(store):
        found.update(_silent(store, app_id, limits, now))
        for kind, names, counts in _rates(store, app_id, limits):
            limit = limits.max_device_fail_rate if kind == "device" else limits.max_issue_rate
            for version, (bad, n) in zip(names, counts, strict=True):
                found.update(_rate(app_id, version, kind, bad, n, limit, limits))
    return found


def checked_apps(store: Store) -> list[str]:
    """The ALERT_APPS apps with the most events, and those with an alert still held (so their
    recovery is judged, not assumed when they fall out of the top), by app id."""
    held = {app_id for app_id, _, _ in store.alert_states()}
    return sorted(set(store.top_apps(ALERT_APPS)) | held)


def _rates(store: Store, app_id: str, limits: Limits) -> list[tuple[str, list, list]]:
    """(kind, versions, [(bad, devices)]) of each rate asked for: the numbers it is judged on."""
    rates = []
    if limits.max_device_fail_rate is not None:
        rows = reports.versions(store, Filters(app_id=app_id))["versions"]
        counts = [(r["failed_devices"], r["installed_devices"] + r["failed_devices"]) for r in rows]
        rates.append(("device", [r["version"] for r in rows], counts))
    if limits.max_issue_rate is not None:
        rows = reports.health(store, Filters(app_id=app_id))["versions"]
        counts = [(r["issue_devices"], r["active_devices"]) for r in rows]
        rates.append(("issue", [r["version"] for r in rows], counts))
    return rates


def _silent(store: Store, app_id: str, limits: Limits, now: int) -> dict[AlertKey, dict]:
    """The app's silence condition, when no event came for more than silent_hours."""
    newest = store.newest_event(app_id)
    if limits.silent_hours is None or newest is None:
        return {}
    hours = (now - newest) / HOUR_MS
    if hours <= limits.silent_hours:
        return {}
    text = f"SILENT {app_id}: no event for {hours:.1f} hours (limit {limits.silent_hours:g})."
    message = {"last_event_at": reports.iso(newest), "hours_since_last_event": round(hours, 2)}
    return {(app_id, "", "silent"): {**message, "limit_hours": limits.silent_hours, "text": text}}


def _rate(
    app_id: str, version: str, kind: str, bad: int, n: int, limit: float, limits: Limits
) -> dict[AlertKey, dict]:
    """A version's rate condition, when its Wilson lower bound is above limit."""
    if version in NOT_BUNDLES:
        return {}
    rule = (limits.min_devices, limits.confidence)
    verdict = reports.wilson_verdict(f"{app_id} {version}", kind, bad, n, limit, rule)
    if verdict.code != 1:
        return {}
    condition = {"device": "device_fail_rate", "issue": "issue_rate"}[kind]
    bound = reports.wilson_lower(bad, n, limits.confidence)
    message = {"failed_devices" if kind == "device" else "issue_devices": bad, "devices": n}
    message.update(bound=round(bound, 4), limit=limit, confidence=limits.confidence)
    return {(app_id, version, condition): {**message, "text": verdict.line}}


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: sha256= and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST body to url; raise OSError (urllib's errors among them) unless it answers 2xx."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - ours
        if not 200 <= response.status < 300:
            raise OSError(f"{url} answered {response.status}")


def message_body(key: AlertKey, details: dict, now: int) -> bytes:
    """The JSON of one alert: what, where, when, the numbers, and one line of text."""
    app_id, version, condition = key
    message = {"condition": condition, "app_id": app_id, "version": version or None}
    return json.dumps({**message, "at": reports.iso(now), **details}, sort_keys=True).encode()


@dataclass
class Outcome:
    """What one check did: lines to print, and whether every POST got through."""

    lines: list[str]
    ok: bool = True


def check(
    store: Store, limits: Limits, url: str, secret: str, now: int, send: Send = post
) -> Outcome:
    """Send each new condition once, and a recovery message ("resolved": true) when it no
    longer holds; a failed POST is tried again at the next check (nothing is recorded)."""
    holding, sent = conditions(store, limits, now), store.alert_states()
    outcome = Outcome([])
    for key in sorted(set(holding) - sent):
        body = message_body(key, holding[key], now)
        try:
            send(url, body, _headers(body, secret))
        except OSError as e:
            outcome.ok = False
            outcome.lines.append(f"NOT SENT ({e}): {holding[key]['text']}")
            continue
        store.raise_alert(key, now)
        outcome.lines.append(f"SENT {holding[key]['text']}")
    cleared = 0
    for key in sorted(sent - set(holding)):
        name = " ".join(part for part in key if part)
        text = f"RECOVERED {name}: the condition no longer holds."
        body = message_body(key, {"resolved": True, "text": text}, now)
        try:
            send(url, body, _headers(body, secret))
        except OSError as e:
            outcome.ok = False  # kept as sent: its recovery is tried again at the next check
            outcome.lines.append(f"NOT SENT ({e}): {text}")
            continue
        store.clear_alerts([key])
        cleared += 1
        outcome.lines.append(f"CLEARED {name}")
    outcome.lines.append(f"{len(holding)} conditions hold, {cleared} cleared.")
    return outcome


def _headers(body: bytes, secret: str) -> dict[str, str]:
    """The headers of a message: JSON, and the signature when there is a secret."""
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers
