"""capgo-stats, the door: `flask run` finds create_app() here.

In production: `gunicorn 'app:create_app()'` (gunicorn.conf.py beside this file). The code lives
in the capgo_stats/ package; docs/ is the reference.
"""

from capgo_stats.factory import create_app

__all__ = ["create_app"]
