"""Hostile input: never a 5xx, every 4xx in the one error shape, nothing invalid stored."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capgo_stats import protocol
from support.payloads import BATCH_IOS_8, event

# Bounded: this file runs in a few seconds. Function-scoped fixtures are fine here, since each
# example only compares the database before and after its own request.
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SQL_LIKE = "com.x'; DROP TABLE event; --"
SCRIPT_LIKE = '<script>alert("x")</script><img src=x onerror=alert(1)>'

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)

# An event whose every field is either plausible or any JSON value at all.
FIELD_VALUES = {
    "action": st.sampled_from(["set", "download_fail", "", "SET", "launch_rockets"]),
    "app_id": st.sampled_from(["com.example.app", "", SQL_LIKE, SCRIPT_LIKE]),
    "device_id": st.text(min_size=1, max_size=130),
    "platform": st.sampled_from(["ios", "ANDROID", "electron", ""]),
    "custom_id": st.text(max_size=50),
    "version_name": st.text(max_size=50),
    "is_emulator": st.booleans(),
    "is_prod": st.booleans(),
    "timestamp": st.integers(min_value=-(2**64), max_value=2**64),
    "metadata": st.dictionaries(st.text(max_size=130), st.text(max_size=20), max_size=3),
}
hostile_events = st.fixed_dictionaries(
    {},
    optional={name: values | json_values for name, values in FIELD_VALUES.items()}
    | {"old_version_name": json_values, "key_id": json_values, "bundle_id": json_values},
)
bodies = (
    hostile_events
    | st.lists(hostile_events | json_values, max_size=6)
    | json_values
    | st.dictionaries(st.text(max_size=10), json_values)
)


def check_answer(response, body) -> int:
    """Assert the answer is a well-formed 200 or 4xx; return how many events it accepted."""
    assert response.status_code in (200, 400, 413), response.data
    answer = response.json
    if response.status_code != 200:
        assert set(answer) == {"error", "message"}
        assert isinstance(answer["error"], str) and isinstance(answer["message"], str)
        return 0
    if "results" not in answer:
        assert answer == {"status": "ok"}
        return 1
    assert isinstance(body, list) and len(answer["results"]) == len(body)
    assert [r["index"] for r in answer["results"]] == list(range(len(body)))
    for r in answer["results"]:
        assert r["status"] == "ok" or set(r) == {"index", "status", "error", "message"}
    return sum(r["status"] == "ok" for r in answer["results"])


def assert_valid_row(row: dict) -> None:
    """A stored row holds only what validation admits."""
    assert row["action"] in protocol.KNOWN_ACTIONS
    for name, limit in (("app_id", 255), ("device_id", 128), ("action", 64)):
        assert isinstance(row[name], str) and 0 < len(row[name]) <= limit * 3
        assert row[name].encode()  # valid Unicode, no lone surrogates
    assert row["device_id"] == row["device_id"].lower()
    assert row["platform"] == row["platform"].lower()
    assert row["custom_id"] is None or (row["custom_id"] == row["custom_id"].strip() != "")
    assert row["is_prod"] in (0, 1) and row["is_emulator"] in (0, 1)
    assert isinstance(row["at"], int) and isinstance(row["received_at"], int)
    assert row["device_ts"] is None or isinstance(row["device_ts"], int)
    for name in ("version_name", "old_version_name", "version_build", "key_id"):
        assert row[name] is None or isinstance(row[name], str)
    if row["metadata"] is not None:
        metadata = json.loads(row["metadata"])
        assert isinstance(metadata, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())


def send(client, rows, data: bytes, body=None, **kw) -> None:
    """POST raw bytes; check the answer and every row it stored."""
    before = rows("SELECT max(id) AS id FROM event")[0]["id"] or 0
    response = client.post("/stats", data=data, **kw)
    accepted = check_answer(response, body)
    new = rows("SELECT * FROM event WHERE id > ?", (before,))
    assert len(new) <= accepted  # fewer when a resent event is stored once
    for row in new:
        assert_valid_row(row)
    if response.status_code != 200:
        assert new == []


@pytest.mark.slow
@FAST
@given(body=bodies)
def test_any_json_body_gets_200_or_a_4xx_and_stores_only_valid_events(client, rows, body):
    send(client, rows, json.dumps(body).encode(), body)


@pytest.mark.slow
@FAST
@given(body=bodies)
def test_any_json_body_with_unicode_unescaped_is_handled_alike(client, rows, body):
    send(client, rows, json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"), body)


@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes_get_a_400_never_a_5xx(client, rows, data):
    send(client, rows, data, None)


@FAST
@given(data=st.binary(min_size=1, max_size=8), at=st.integers(min_value=0))
def test_a_valid_batch_with_random_bytes_spliced_in_is_handled(client, rows, data, at):
    valid = json.dumps(BATCH_IOS_8).encode()
    at %= len(valid)
    spliced = valid[:at] + data + valid[at:]
    try:
        body = json.loads(spliced)
    except ValueError:
        body = None
    send(client, rows, spliced, body)


@FAST
@given(
    params=st.dictionaries(
        st.sampled_from(["app_id", "action", "platform", "since", "until", "other"]),
        st.text(max_size=40),
    )
)
def test_any_query_string_on_counts_gets_200_or_a_400(client, params):
    response = client.get("/stats/counts", query_string=params)
    assert response.status_code in (200, 400), response.data
    if response.status_code == 400:
        assert set(response.json) == {"error", "message"}
        assert response.json["error"] == "invalid_filter"


# The dashboard's own parameters, and the names url_for takes as its own arguments.
PAGE_PARAMS = ["app_id", "platform", "since", "until", "include_dev", "action", "other"]
PAGE_PARAMS += ["_method", "endpoint", "values", "_external", "_anchor", "_scheme"]


@FAST
@given(params=st.dictionaries(st.sampled_from(PAGE_PARAMS), st.text(max_size=20)))
def test_any_query_string_on_the_dashboard_gets_200_or_a_400(client, params):
    client.post("/stats", json=event(is_prod=False))  # an app, so the page draws its links
    response = client.get("/", query_string=params)
    assert response.status_code in (200, 400), response.data[:300]
    if response.status_code == 400:
        assert response.json["error"] == "invalid_filter"


DEEP = 100_000
HEAD = b'{"action":"set","app_id":"a","device_id":"d"'  # an event without its closing brace


def raw(**changes) -> bytes:
    """A valid event with some fields changed, as UTF-8 JSON bytes."""
    return json.dumps(event(**changes)).encode()


# (name, raw body): the known nasties. None is answered with a 5xx or stores anything invalid.
NASTIES = [
    ("invalid utf-8", b'{"action":"set","app_id":"\xff","device_id":"d"}'),
    ("overlong utf-8", b'{"action":"set","app_id":"\xc0\xaf","device_id":"d"}'),
    ("utf-8 encoded surrogate", b'{"action":"set","app_id":"a","device_id":"\xed\xa0\x80"}'),
    ("utf-8 bom", b"\xef\xbb\xbf" + raw()),
    ("two utf-8 boms", b"\xef\xbb\xbf\xef\xbb\xbf" + raw()),
    ("utf-16 with bom", json.dumps(event()).encode("utf-16")),
    ("utf-32", json.dumps(event()).encode("utf-32")),
    ("NaN", b'{"action":"set","app_id":"a","device_id":"d","timestamp":NaN}'),
    ("Infinity", b'[{"action":"set","app_id":"a","device_id":"d","timestamp":Infinity}]'),
    ("-Infinity", b'{"action":"set","app_id":"a","device_id":"d","timestamp":-Infinity}'),
    ("1e400", b'{"action":"set","app_id":"a","device_id":"d","timestamp":1e400}'),
    ("5000-digit number", HEAD + b',"timestamp":' + b"9" * 5000 + b"}"),
    ("2**63", raw(timestamp=2**63)),
    ("-2**63", raw(timestamp=-(2**63))),
    ("3 MB string", raw(custom_id="x" * 3_000_000)),
    ("100,000 items", json.dumps([0] * 100_000).encode()),
    ("1,000 empty objects", json.dumps([{}] * 1000).encode()),
    ("deep array", b"[" * DEEP + b"]" * DEEP),
    ("deep object", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("deep metadata", raw(metadata={"k": [[[[[["v"]]]]]]})),
    ("900-deep field", HEAD + b',"custom_id":' + b"[" * 900 + b"]" * 900 + b"}"),
    ("duplicate keys", b'{"action":"launch_rockets","action":"set","app_id":"a","device_id":"d"}'),
    ("numbers for strings", raw(app_id=1, device_id=2.5, action=3)),
    ("booleans for strings", raw(device_id=True)),
    ("objects for strings", raw(version_name={"a": "b"})),
    ("escaped NUL", raw(device_id="d\x00evil", custom_id="\x00")),
    ("raw NUL byte", b'{"action":"set","app_id":"a","device_id":"d\x00"}'),
    ("only NUL bytes", b"\x00" * 64),
    ("only whitespace", b" \t\r\n" * 100),
    ("json then garbage", raw() + b"garbage"),
    ("two objects", raw() * 2),
    ("gzip magic", b"\x1f\x8b\x08\x00" + b"\x00" * 20),
    ("form encoded", b"action=set&app_id=a&device_id=d"),
    ("proto keys", HEAD + b',"__proto__":{"x":1},"constructor":1}'),
    ("metadata with 1,000 keys", raw(metadata={str(i): "v" for i in range(1000)})),
    ("whitespace device id", raw(device_id=" \t ")),
    ("control characters", raw(version_name="\x1b[31mred\x1b[0m\r\n")),
    ("right-to-left override", raw(custom_id="\u202eevil")),
]  # fmt: skip


@pytest.mark.parametrize("data", [n[1] for n in NASTIES], ids=[n[0] for n in NASTIES])
def test_a_known_nasty_body_gets_200_or_a_4xx_and_stores_only_valid_events(client, rows, data):
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        body = None
    send(client, rows, data, body)


@pytest.mark.parametrize("value", [SQL_LIKE, SCRIPT_LIKE, "Robert'); DROP TABLE event;--"])
def test_sql_and_script_looking_strings_are_stored_verbatim_and_harmless_as_filters(
    client, rows, value
):
    body = event(custom_id=value, version_name=value, version_build=value, metadata={"k": value})
    assert client.post("/stats", json=body).status_code == 200
    [row] = rows()
    assert row["custom_id"] == row["version_name"] == row["version_build"] == value
    assert json.loads(row["metadata"]) == {"k": value}
    counts = client.get("/stats/counts", query_string={"app_id": value, "platform": value})
    assert counts.json == {"counts": [], "more": 0}
    assert len(rows()) == 1


def test_script_and_sql_looking_names_come_back_verbatim_in_json(make_app):
    # An operator may accept any action name; /stats/counts serves it as sent, as JSON.
    names = [SCRIPT_LIKE, "x'); DROP TABLE event;--", "50% of ? marks %s"]
    app = make_app(STATS_EXTRA_ACTIONS=",".join(names))
    client = app.test_client()
    for name in names:
        assert client.post("/stats", json=event(action=name)).status_code == 200
    response = client.get("/stats/counts")
    assert response.mimetype == "application/json"
    assert sorted(c["action"] for c in response.json["counts"]) == sorted(names)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE"])
@pytest.mark.parametrize("path", ["/stats", "/stats/counts"])
def test_a_wrong_method_gets_a_405_json_error_and_stores_nothing(client, rows, method, path):
    response = client.open(path, method=method, data=json.dumps(event()))
    assert response.status_code == 405
    assert set(response.json) == {"error", "message"}
    assert rows() == []


def test_post_on_a_read_route_gets_a_405_json_error(client, rows):
    response = client.post("/stats/counts", json=event())
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert rows() == []


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "text/html; charset=latin-1",
        "application/json; charset=utf-16",
        "image/png",
        "application/json; boundary=\x00",
    ],
)
def test_any_content_type_is_ignored_and_the_body_read_as_json(client, rows, content_type):
    response = client.post("/stats", data=json.dumps(event()), content_type=content_type)
    assert response.status_code == 200
    assert len(rows()) == 1


def test_a_multipart_upload_is_a_400_json_error(client, rows):
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nhi\r\n--xyz--\r\n'
    )
    response = client.post("/stats", data=body, content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_json"
    assert rows() == []


@pytest.mark.slow
def test_the_known_nasties_over_a_real_socket_get_no_5xx_and_no_reset(serve):
    server = serve(workers=1)
    for name, data in NASTIES:
        status, _, answer = server.request("POST", "/stats", data)
        assert status in (200, 400, 413), name
        assert isinstance(answer, dict), name


@pytest.mark.parametrize(
    "query",
    [
        "?until=9999-12-31",
        "?since=0001-01-01&until=0001-01-01",
        "?since=9999-12-31T23:59:59-23:59",
        "?since=0001-01-01T00:00:00%2B23:59",
        "?app_id=%00&action=%ff%fe",
        "?since=" + "9" * 5000,
        "?platform=" + "x" * 10_000,
        "?app_id=a&app_id=b",
    ],
)
def test_a_nasty_query_string_on_counts_gets_200_or_a_400(client, query):
    response = client.get("/stats/counts" + query)
    assert response.status_code in (200, 400), response.data
    assert response.status_code == 200 or response.json["error"] == "invalid_filter"
