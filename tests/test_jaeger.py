"""Acceptance: the fraud service's traces, found in a real Jaeger by request id."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fraud import serve_fraud, transactions
from tests.services import jaeger_url

pytestmark = pytest.mark.integration


@pytest.fixture
def bentoml_server_traced(tmp_path):
    _, otlp = jaeger_url()
    with serve_fraud(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=otlp) as (base, data, _stop):
        yield base, data


def descendants(spans: list[dict], root: str) -> set[str]:
    """Operation names of every span below ``root`` in the trace."""
    parent = {
        s["spanID"]: ref["spanID"]
        for s in spans
        for ref in s.get("references", [])
        if ref.get("refType") == "CHILD_OF"
    }
    below = set()
    for s in spans:
        node = s["spanID"]
        while node in parent:
            node = parent[node]
            if node == root:
                below.add(s["operationName"])
                break
    return below


def find_trace(query: str, request_id: str, timeout: float = 60) -> dict:
    tags = json.dumps({"predlog.request.id": request_id})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{query}/api/traces",
            params={"service": "fraud", "tags": tags, "limit": 5, "lookback": "1h"},
            timeout=10,
        )
        if r.status_code == 200 and r.json().get("data"):
            (found,) = r.json()["data"]
            return found
        time.sleep(1)
    raise AssertionError(
        f"no trace with predlog.request.id={request_id} in Jaeger after {timeout} s"
    )


class TestTracesInJaeger:
    def test_every_request_is_found_with_attributes_and_children(self, bentoml_server_traced):
        """Each request id finds one trace: a server span with the prediction, two children."""
        base, _ = bentoml_server_traced
        query, _ = jaeger_url()
        sent = {}
        with httpx.Client(base_url=base, timeout=30) as client:
            for i, tx in enumerate(transactions(8, seed=9)):
                rid = f"jaeger-{time.time_ns()}-{i}"
                r = client.post("/predict", json={"transaction": tx}, headers={"X-Request-ID": rid})
                assert r.status_code == 200
                sent[rid] = r.json()
        for rid, response in sent.items():
            trace = find_trace(query, rid)
            spans = trace["spans"]
            tags = {s["spanID"]: {t["key"]: t["value"] for t in s["tags"]} for s in spans}
            (server,) = [s for s in spans if tags[s["spanID"]].get("predlog.request.id") == rid]
            server_tags = tags[server["spanID"]]
            assert server_tags["span.kind"] == "server"
            assert server_tags["predlog.model.name"] == "fraud"
            assert server_tags["predlog.model.version"] == "v2.1.0"
            assert server_tags["predlog.prediction.score"] == response["score"]
            assert server_tags["predlog.prediction.decision"] == response["decision"]
            # No attribute of predlog's outside the conventions or its own namespace.
            assert not {"request_id"} & set(server_tags)
            assert not [k for k in server_tags if k.startswith("ml.")]
            children = descendants(spans, server["spanID"])
            assert {"feature_fetch", "inference"} <= children
