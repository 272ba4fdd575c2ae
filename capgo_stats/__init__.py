"""capgo-stats: a self-hosted receiver for @capgo/capacitor-updater statistics.

The package holds no code of its own, so importing any of its modules imports nothing else:
create_app() is in factory.py, and the README's "Layout" names every room.
"""
