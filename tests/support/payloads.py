"""Bodies as the plugin sends them (docs/api.md, "POST /stats"), shared by the tests."""

import copy

SINGLE_ANDROID_7 = {
    "action": "set",
    "app_id": "com.example.app",
    "device_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    "platform": "android",
    "custom_id": "",
    "version_name": "1.2.3",
    "version_build": "1.2.0",
    "version_code": "120",
    "version_os": "14",
    "plugin_version": "7.36.1",
    "is_emulator": False,
    "is_prod": True,
    "old_version_name": "1.2.2",
    "defaultChannel": "",
}

BATCH_IOS_8 = [
    {
        "platform": "ios",
        "device_id": "0f673663-459a-44c0-a7f5-613f2a4af3ab",
        "app_id": "com.example.app",
        "custom_id": "user_1",
        "version_build": "1.2.0",
        "version_code": "12",
        "version_os": "17.4",
        "version_name": "1.2.3",
        "old_version_name": "",
        "plugin_version": "8.51.14",
        "is_emulator": False,
        "is_prod": True,
        "defaultChannel": "",
        "install_source": "app_store",
        "action": "app_moved_to_foreground",
        "timestamp": 1766000000000,
    },
    {
        "platform": "ios",
        "device_id": "0f673663-459a-44c0-a7f5-613f2a4af3ab",
        "app_id": "com.example.app",
        "custom_id": "user_1",
        "version_build": "1.2.0",
        "version_code": "12",
        "version_os": "17.4",
        "version_name": "1.2.3",
        "old_version_name": "",
        "plugin_version": "8.51.14",
        "is_emulator": False,
        "is_prod": True,
        "defaultChannel": "",
        "action": "app_launch_ready",
        "timestamp": 1766000000450,
        "metadata": {"duration_ms": "450", "source": "notifyAppReady"},
    },
]

# An old plugin (4.x): no is_emulator/is_prod, no timestamp; iOS sent the device id uppercase.
SINGLE_IOS_4 = {
    "action": "download_complete",
    "app_id": "com.example.app",
    "device_id": "9B2C4F1A-7D3E-4A5B-8C6D-0E1F2A3B4C5D",
    "platform": "ios",
    "version_name": "1.0.0",
    "version_build": "1.0",
    "version_code": "1",
    "version_os": "15.2",
    "plugin_version": "4.13.0",
}

# The Electron updater: keys of its own, platform "electron", one object per request.
SINGLE_ELECTRON = {
    "action": "download_fail",
    "app_id": "com.example.desktop",
    "device_id": "6c1d3b0e-1f5a-4c2b-9d8e-7a6b5c4d3e2f",
    "platform": "electron",
    "version_name": "2.0.0",
    "version_build": "2.0.0",
    "version_code": "",
    "version_os": "6.8.0-45-generic",
    "plugin_version": "0.0.1",
    "is_emulator": False,
    "is_prod": True,
    "bundle_id": "a1b2c3",
    "message": "Fichier corrompu: somme de contrôle ≠ attendue",
}


REMOVE = object()


def event(**changes):
    """A valid single event with some fields changed (REMOVE removes a field)."""
    body = copy.deepcopy(SINGLE_ANDROID_7)
    for key, value in changes.items():
        if value is REMOVE:
            body.pop(key, None)
        else:
            body[key] = value
    return body
