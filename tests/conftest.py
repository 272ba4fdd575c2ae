import pytest

from app import create_app
from capgo_stats import fold


@pytest.fixture(autouse=True, scope="session")
def no_background_fold():
    """No fold thread in the apps tests make: reads fold what they need, and a thread would
    outlive its test's database. Real servers (tests/support/live.py) fold in the background."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STATS_FOLD_INTERVAL_S", "0")
        yield


@pytest.fixture
def app(tmp_path):
    """A new app on a fresh database for each test."""
    app = create_app({"TESTING": True, "STATS_DB": str(tmp_path / "stats.db")})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def rows(app):
    """Read rows straight from the database, once the fold has caught up (as any read does)."""

    def read(sql="SELECT * FROM event ORDER BY id", params=()):
        fold.catch_up(app.extensions["store"])
        return app.extensions["store"].query(sql, params)

    return read


@pytest.fixture
def serve(tmp_path):
    """Start real gunicorn servers on loopback; every one is killed at the end of the test."""
    from support.live import Gunicorn

    servers = []

    def start(db=None, workers=4, **settings):
        server = Gunicorn(
            db or tmp_path / "stats.db", tmp_path / f"server{len(servers)}.log", workers, **settings
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
