"""predlog's metrics on BentoML's own /metrics endpoint, under a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from services.bentoserve import BentoServer

from tests.fraud import serve_fraud, transactions
from tests.helpers import ROOT, bento_env


def _delivered(text: str, model: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "predlog_records_total"
                and sample.labels.get("model") == model
                and sample.labels.get("outcome") == "delivered"
            ):
                return sample.value
    return 0.0


def _wait_for(client: httpx.Client, model: str, expected: float) -> str:
    """/metrics once the flushers have published ``expected`` delivered records (or 30 s).

    Delivered means in a published file: until its file is published, a record counts
    pending (a crash would lose it)."""
    deadline = time.monotonic() + 30
    while True:
        text = client.get("/metrics").text
        if _delivered(text, model) >= expected or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


async def _concurrently(base: str, n: int) -> int:
    """Send ``n`` predictions 16 at a time, so that every worker takes some; the number
    answered 200."""
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/predict", json={"transaction": {"amount": i}}) for i in range(n))
        )
    return sum(r.status_code == 200 for r in responses)


@pytest.mark.integration
class TestBentomlMetrics:
    def test_records_total_moves_on_the_servers_metrics(self, tmp_path):
        """Requests to the fraud service show as delivered records on GET /metrics, once
        their Parquet file is published (a second after it opened, here)."""
        with (
            serve_fraud(tmp_path, PREDLOG_PARQUET_MAX_FILE_AGE_S="1") as (base, _, stop),
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            before = _delivered(client.get("/metrics").text, "fraud")
            for tx in transactions(10, seed=3):
                assert client.post("/predict", json={"transaction": tx}).status_code == 200
            text = _wait_for(client, "fraud", before + 10)
            assert _delivered(text, "fraud") == before + 10, stop()
            assert "predlog_flusher_batch_seconds_bucket" in text
            assert 'predlog_records_captured_total{model="fraud"}' in text

    def test_four_workers_add_up_on_one_scrape(self, tmp_path):
        """With four workers (multiprocess mode), one scrape counts every worker's records."""
        server = BentoServer(
            "tests.multi_worker_service:Scorer",
            log_path=tmp_path / "server.log",
            cwd=ROOT,
            env=bento_env(
                tmp_path / "data", tmp_path / "bentoml", PREDLOG_PARQUET_MAX_FILE_AGE_S="1"
            ),
        )
        with server, httpx.Client(base_url=server.base_url, timeout=30) as client:
            answered = asyncio.run(_concurrently(server.base_url, 400))
            assert answered == 400
            text = _wait_for(client, "multi", answered)
            assert _delivered(text, "multi") == answered, server.stop()
            # Each worker's logger adds its ring: all four are in this one scrape.
            assert f'predlog_ring_capacity{{model="multi"}} {4 * 65536}.0' in text
