"""The example database: a month of plugin traffic from three apps, the same bytes on every run.

`flask make-example` writes it to stats.db.example. Every event goes through the normal path
(protocol.validate, the store's write, then the fold), so the rollups are filled as in production.
The story:

- com.example.shop (Android and iOS): everyone runs 2.3.0; 2.4.0 rolls out from day 6 and installs
  almost everywhere; 2.4.1 rolls out from day 19 and fails (unzip_fail, checksum_fail) on most
  Android 10 and 11 devices, which stay on 2.4.0 and retry. Four dev builds try 2.5.0-beta.1 and
  two emulators fail on it: neither counts by default. Some devices report a custom event the
  server does not know (refused: unknown_action).
- com.example.notes (iOS and Android): 1.9.0 rolls out from day 12; a group of devices on plugin
  6.10.3 sends the legacy download_fail every day (ignored as a failure).
- com.example.desktop (Electron updater): 0.9.1 from day 20; one build forgot its app id
  (refused: missing_field, app "").
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field

from capgo_stats import fold, protocol
from capgo_stats.protocol import DAY_MS, HOUR_MS
from capgo_stats.store import SQLiteStore

BASE_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z: fixed, so the file is the same every run
DAYS = 30
SEED = 20261001


@dataclass
class Device:
    """One simulated app install and what it runs."""

    app_id: str
    device_id: str
    platform: str
    version_os: str
    plugin_version: str
    bundle: str
    is_prod: bool = True
    is_emulator: bool = False
    custom_id: str = ""
    rollout_day: dict[str, int] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)

    def event(self, action: str, version: str, at: int, **extra: object) -> dict:
        """An event body as this device's plugin sends it."""
        body = {
            "action": action,
            "app_id": self.app_id,
            "device_id": self.device_id,
            "platform": self.platform,
            "custom_id": self.custom_id,
            "version_name": version,
            "version_build": "3.1.0",
            "version_code": "310",
            "version_os": self.version_os,
            "plugin_version": self.plugin_version,
            "is_emulator": self.is_emulator,
            "is_prod": self.is_prod,
            "defaultChannel": "",
            **extra,
        }
        if not self.plugin_version.startswith(("6.", "7.", "0.")):  # 8.42+: device timestamp
            body["timestamp"] = at
        return body


# Each app's rollouts: (bundle, first day, the devices that fail it and how often).
ROLLOUTS = {
    "com.example.shop": [("2.4.0", 6), ("2.4.1", 19)],
    "com.example.notes": [("1.9.0", 12)],
    "com.example.desktop": [("0.9.1", 20)],
}


def _fail_chance(device: Device, bundle: str) -> float:
    """How likely an install attempt of a bundle fails on a device."""
    if bundle == "2.4.1" and device.platform == "android" and device.version_os in ("10", "11"):
        return 0.8
    if bundle == "2.5.0-beta.1" and device.is_emulator:
        return 1.0
    return 0.02


def _devices(rng: random.Random) -> list[Device]:
    """The fleet: prod devices of three apps, dev builds and emulators."""

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    fleet = []
    for _ in range(150):
        android = rng.random() < 0.65
        fleet.append(
            Device(
                "com.example.shop",
                new_id(),
                "android" if android else "ios",
                rng.choice(["10", "11", "13", "14"] if android else ["16.7", "17.4", "18.1"]),
                rng.choice(["8.51.14", "8.49.2", "7.36.1", "6.14.30"]),
                "2.3.0" if rng.random() < 0.9 else "builtin",
                custom_id=f"user_{rng.randrange(10_000)}" if rng.random() < 0.5 else "",
            )
        )
    for i in range(6):
        emulator = i >= 4
        fleet.append(
            Device(
                "com.example.shop",
                new_id(),
                "android" if i % 2 else "ios",
                "14" if i % 2 else "18.1",
                "8.51.14",
                "2.4.0",
                is_prod=emulator,
                is_emulator=emulator,
                rollout_day={"2.5.0-beta.1": 22 + i},
            )
        )
    for i in range(55):
        ios = rng.random() < 0.6
        fleet.append(
            Device(
                "com.example.notes",
                new_id(),
                "ios" if ios else "android",
                rng.choice(["17.4", "18.1"] if ios else ["13", "14"]),
                "6.10.3" if i < 12 else rng.choice(["7.20.0", "8.51.14"]),
                "1.8.2",
            )
        )
    for i in range(14):
        fleet.append(
            Device(
                "com.example.desktop" if i < 12 else "",
                new_id(),
                "electron",
                rng.choice(["6.8.0-45-generic", "10.0.22631", "24.1.0"]),
                "0.0.1",
                "0.9.0",
            )
        )
    for device in fleet:
        for bundle, first in ROLLOUTS.get(device.app_id, []):
            device.rollout_day[bundle] = first + int(rng.expovariate(0.5))
    return fleet


def _day(device: Device, day: int, rng: random.Random) -> list[tuple[int, list[dict]]]:
    """One device's sessions on one day: (time, events) for each, or none when it is idle."""
    if rng.random() > 0.5:
        return []
    sessions = []
    start = BASE_MS + day * DAY_MS + rng.randrange(7 * HOUR_MS, 22 * HOUR_MS)
    for n in range(rng.choice([1, 1, 2, 3])):
        at = start + n * rng.randrange(20 * 60_000, 90 * 60_000)
        batch = [device.event("app_moved_to_foreground", device.bundle, at)]
        if n == 0:
            batch += _updates(device, day, at + 2_000, rng)
        if device.plugin_version == "6.10.3":  # "nothing to download", as those plugins said it
            batch.append(device.event("download_fail", device.bundle, at + 500))
        if device.app_id == "com.example.shop" and rng.random() < 0.08:
            batch.append(device.event("app_custom_event", device.bundle, at + 900))
        sessions.append((at, batch))
        later = at + rng.randrange(60_000, 900_000)
        sessions.append((later, [device.event("app_moved_to_background", device.bundle, later)]))
    return sessions


def _updates(device: Device, day: int, at: int, rng: random.Random) -> list[dict]:
    """The download and install events of a rollout the device is due for today."""
    for bundle, due in device.rollout_day.items():
        if due > day or device.bundle == bundle or device.tries.get(bundle, 0) >= 3:
            continue
        if bundle < device.bundle and device.bundle != "builtin":
            continue  # already past it
        device.tries[bundle] = device.tries.get(bundle, 0) + 1
        batch = [device.event("download_complete", bundle, at)]
        if rng.random() < _fail_chance(device, bundle):
            action = rng.choice(["unzip_fail", "checksum_fail", "download_fail"])
            return [*batch, device.event(action, bundle, at + 1_500)]
        old, device.bundle = device.bundle, bundle
        return [*batch, device.event("set", bundle, at + 1_500, old_version_name=old)]
    return []


def build(path: str) -> int:
    """Write the example database to path (replacing it); return how many events it holds."""
    rng = random.Random(SEED)
    fleet = _devices(rng)
    sessions = []
    for day in range(DAYS):
        for index, device in enumerate(fleet):
            sessions += [(at, index, batch) for at, batch in _day(device, day, rng)]
    sessions.sort(key=lambda s: (s[0], s[1]))
    partial = path + ".partial"
    for leftover in (partial, partial + "-wal", partial + "-shm", partial + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    store = SQLiteStore(partial)
    store.ensure_schema()
    actions = protocol.KNOWN_ACTIONS
    stored = 0
    for at, _, batch in sessions:
        # the batch arrives a second after its last event (a clock ahead of arrival is not
        # believed, protocol._event_time)
        now = max(item.get("timestamp", at) for item in batch) + 1_000
        outcomes = [protocol.validate(item, actions, now) for item in batch]
        rows = [o for o in outcomes if not isinstance(o, protocol.Refusal)]
        store.write(rows, [o for o in outcomes if isinstance(o, protocol.Refusal)], now)
        stored += len(rows)
    fold.catch_up(store)
    store.seal()
    os.replace(partial, path)
    return stored
