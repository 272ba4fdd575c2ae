"""POSTing events through Flask's test client, as a plugin would."""

import json


def post(client, body, **kw):
    """POST a body (any JSON value, or raw bytes) to /stats; return the response."""
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return client.post("/stats", data=data, **kw)


def post_ok(client, batch):
    """POST a batch that must be taken whole: a 200 with every result ok."""
    response = post(client, batch)
    assert response.status_code == 200, response.json
    results = response.json.get("results", [])
    assert all(r["status"] == "ok" for r in results), response.json
    return response
