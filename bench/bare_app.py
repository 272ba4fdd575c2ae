"""The yardstick for ingest speed: a bare Flask route that parses the same JSON and answers ok.

No validation, no database. bench/run.py serves it under the same gunicorn settings as the
real app, so the ratio between the two is what our own work costs.
"""

import json

from flask import Flask, request


def create_app() -> Flask:
    """A Flask app with one POST /stats route."""
    app = Flask(__name__)

    @app.post("/stats")
    def stats() -> dict:
        json.loads(request.get_data(cache=False))
        return {"status": "ok"}

    return app
