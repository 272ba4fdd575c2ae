"""The web layer: blueprints for ingest, the JSON reads, the dashboard and the ops routes, and
what every request passes through (access, the error handler, the request log)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register every route and the request hooks on the app."""
    # Imported here, not with the package: gunicorn's master imports web.access (its start-up
    # warning, gunicorn.conf.py) before forking the workers, and through these it imported
    # psycopg, which chooses how it waits for the server once, on import. Chosen before gevent
    # patched the worker, it blocked the worker's event loop for every PostgreSQL statement:
    # a POST beside a looping 0.5 s read waited 0.5 s.
    from capgo_stats.web import access, context, dashboard, errors, ingest, ops, reads, requestlog

    errors.init_app(app)
    access.init_app(app)
    for blueprint in (ingest.bp, reads.bp, dashboard.bp, ops.bp):
        app.register_blueprint(blueprint)
    requestlog.init_app(app)
    app.teardown_request(context.end_read_deadline)
