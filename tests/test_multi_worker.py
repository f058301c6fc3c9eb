"""Acceptance: four `bentoml serve` workers under concurrent load, then SIGTERM."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.helpers import parquet_files, read_all, start_bento

pytestmark = pytest.mark.integration

REQUESTS = 1200
CONCURRENCY = 32


async def _load(base: str) -> list[str]:
    """Send REQUESTS predictions, CONCURRENCY at a time; the ids of those answered 200."""
    answered: list[str] = []
    queue = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def worker() -> None:
            for i in queue:
                rid = f"mw-{i:05d}"
                r = await client.post(
                    "/predict",
                    json={"transaction": {"amount": i % 1000}},
                    headers={"X-Request-ID": rid},
                )
                if r.status_code == 200 and r.headers["x-request-id"] == rid:
                    answered.append(rid)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answered


class TestFourWorkers:
    def test_every_answered_request_logged_once_by_every_worker(self, tmp_path):
        """Every request answered under concurrent load is in the log exactly once after
        SIGTERM, and the files come from all four workers."""
        data = tmp_path / "data"
        server = start_bento("tests.multi_worker_service:Scorer", tmp_path, data)
        try:
            time.sleep(5)  # /readyz answers once one worker is up; let the others start
            answered = asyncio.run(_load(server.base_url))
        finally:
            log = server.stop(timeout=90)
        assert len(answered) == REQUESTS, log[-3000:]
        logged = read_all(data).column("request_id").to_pylist()
        assert sorted(logged) == sorted(answered)
        pids = {re.search(r"-(\d+)-\d+\.parquet$", f.name).group(1) for f in parquet_files(data)}
        assert len(pids) == 4, sorted(pids)
