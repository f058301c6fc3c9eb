"""Acceptance: the fraud example under `bentoml serve`, and the same app on FastAPI."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.fraud import PSEUDONYM_KEY, check_records, serve_fraud, transactions
from tests.helpers import read_all

pytestmark = pytest.mark.integration

BENTOML = Path(sys.executable).parent / "bentoml"


def send(client: httpx.Client, txs, *, with_ids: bool, prefix: str):
    sent = []
    for i, tx in enumerate(txs):
        headers = {"X-Request-ID": f"{prefix}-{i}"} if with_ids else {}
        response = client.post("/predict", json={"transaction": tx}, headers=headers)
        assert response.status_code == 200, response.text
        echoed = response.headers["x-request-id"]
        if with_ids:
            assert echoed == f"{prefix}-{i}"
        sent.append(
            {
                "request_id": echoed,
                "given_id": headers.get("X-Request-ID"),
                "transaction": tx,
                "response": response.json(),
            }
        )
    return sent


@pytest.fixture
def bentoml_server(tmp_path):
    with serve_fraud(tmp_path) as server:
        yield server


class TestUnderBentomlServe:
    def test_records_match_requests(self, bentoml_server):
        """Requests with and without X-Request-ID produce matching Parquet records."""
        base, data, stop = bentoml_server
        with httpx.Client(base_url=base, timeout=30) as client:
            sent = send(client, transactions(20, seed=1), with_ids=True, prefix="bento")
            sent += send(client, transactions(5, seed=2), with_ids=False, prefix="")
            assert client.get("/readyz").status_code == 200
        server_log = stop()
        records = read_all(data).to_pylist()
        assert records, server_log
        check_records(sent, records)


class TestUnderFastAPI:
    def test_records_match_requests(self, tmp_path, monkeypatch):
        """The FastAPI app with the same middleware passes the same checks."""
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("PREDLOG_PSEUDONYM_KEY", PSEUDONYM_KEY)
        monkeypatch.setenv("PREDLOG_INSTALL_SIGNAL_HANDLERS", "false")
        from examples.fraud_service.fastapi_app import app

        app.middleware_stack = None  # build a fresh stack (and logger) for this test
        transport = httpx.ASGITransport(app=app)

        async def run():
            async with httpx.AsyncClient(transport=transport, base_url="http://fraud") as c:
                sent = []
                for with_ids, txs in ((True, transactions(20, 3)), (False, transactions(5, 4))):
                    for i, tx in enumerate(txs):
                        headers = {"X-Request-ID": f"fastapi-{i}"} if with_ids else {}
                        r = await c.post("/predict", json={"transaction": tx}, headers=headers)
                        assert r.status_code == 200, r.text
                        sent.append(
                            {
                                "request_id": r.headers["x-request-id"],
                                "given_id": headers.get("X-Request-ID"),
                                "transaction": tx,
                                "response": r.json(),
                            }
                        )
                assert (await c.get("/healthz")).status_code == 200
                return sent

        sent = asyncio.run(run())
        middleware = app.middleware_stack
        while type(middleware).__name__ != "PredictionLogMiddleware":
            middleware = middleware.app
        middleware.logger.close()
        check_records(sent, read_all(tmp_path / "data").to_pylist())
