import os

import pytest

from app import create_app
from capgo_stats import fold


def pytest_generate_tests(metafunc):
    """Every test that touches storage (through the `database` fixture) runs on each store.

    The quick loop (-m "not slow") runs them on SQLite, and on PostgreSQL those of
    test_postgres.py; the whole suite runs every one on both (a PostgreSQL round trip costs
    more than a SQLite call, and twice the tests would not fit the quick loop's minute).
    """
    if "store_kind" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("sqlite_only"):
        kinds = ["sqlite"]
    elif metafunc.module.__name__.endswith("test_postgres"):
        kinds = ["postgres"]
    else:
        kinds = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]
    metafunc.parametrize("store_kind", kinds, indirect=True)


@pytest.fixture(autouse=True, scope="session")
def no_background_fold():
    """No fold thread in the apps tests make: reads fold what they need, and a thread would
    outlive its test's database. Real servers (tests/support/live.py) fold in the background."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STATS_FOLD_INTERVAL_S", "0")
        yield


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session. Without PostgreSQL installed its tests
    skip, except in CI (CI=true), where they must run."""
    from support.postgres import Cluster

    try:
        cluster = Cluster()
    except (FileNotFoundError, KeyError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but: {e}")
        pytest.skip(f"PostgreSQL is not installed here ({e}); CI runs these")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres):
    """The URL of the session's test database, its schema made once."""
    url = postgres.create_database("capgo_stats_test")
    create_app({"TESTING": True, "STATS_DATABASE_URL": url}).extensions["store"].close()
    return url


@pytest.fixture
def store_kind(request):
    """Which store the test runs on: "sqlite" or "postgres" (parametrized)."""
    return request.param


@pytest.fixture
def database(request, store_kind, tmp_path):
    """The settings of a fresh, empty database of the test's store."""
    if store_kind == "sqlite":
        return {"STATS_DB": str(tmp_path / "stats.db")}
    from support.postgres import empty

    url = request.getfixturevalue("postgres_url")
    empty(url)
    return {"STATS_DATABASE_URL": url, "STATS_DB": str(tmp_path / "stats.db")}


@pytest.fixture
def app(database):
    """A new app on a fresh database for each test."""
    app = create_app({"TESTING": True, **database})
    yield app
    app.extensions["store"].close()


@pytest.fixture
def make_app(database):
    """create_app on the test's database with settings of its own; each app made is closed
    after the test."""
    made = []

    def make(**settings):
        made.append(create_app({"TESTING": True, **database, **settings}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["store"].close()


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
