"""How KafkaSink hands its messages to aiokafka: an export never waits for batches to linger."""

from __future__ import annotations

import pytest

from predlog import KafkaSink
from tests.services import fresh_topic, kafka_bootstrap
from tests.test_kafka import a_batch


@pytest.mark.integration
class TestSendBatches:
    def test_the_last_batches_of_an_export_do_not_linger(self, tmp_path):
        """The batches an export ends with are closed when handed over, so the sender
        takes them at once: with a linger far beyond the delivery deadline, the records
        are still acknowledged, not spooled after the deadline."""
        sink = KafkaSink(
            bootstrap_servers=kafka_bootstrap(),
            topic=fresh_topic("linger"),
            spool_dir=tmp_path / "spool",
            delivery_timeout_s=5,
            linger_ms=600_000,
        )
        try:
            sink.export(a_batch(10, "first"))  # also makes the topic
            sink.export(a_batch(25, "second"))
            stats = sink.stats()
        finally:
            sink.close()
        assert (stats["sent"], stats["spooled"]) == (35, 0)
        assert sink.reporter.counts() == {}
