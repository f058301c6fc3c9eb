"""Kafka's key partitioner, vectorised: the same hash and partition as the Java client."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from predlog.sinks.kafka._murmur2 import murmur2, partitions

# Kafka's own test vectors (clients/.../utils/UtilsTest.java, testMurmur2), signed.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_kafka_vectors():
    hashes = murmur2(list(KAFKA_VECTORS))
    assert [signed(int(h)) for h in hashes] == list(KAFKA_VECTORS.values())


def test_every_length_and_tail_matches_aiokafka():
    """Keys of every length 0..64 (so every tail of 0-3 bytes), mixed in one batch."""
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(65)) for _ in range(3000)] + [b""]
    assert [int(h) for h in murmur2(keys)] == [aiokafka_murmur2(k) & 0xFFFFFFFF for k in keys]


def test_partitions_match_the_default_partitioner():
    rng = random.Random(8)
    keys = [f"req-{rng.getrandbits(64):x}".encode() for _ in range(2000)]
    choose = DefaultPartitioner()
    for count in (1, 3, 7, 64):
        everyone = list(range(count))
        expected = [choose(k, everyone, everyone) for k in keys]
        assert partitions(keys, count).tolist() == expected


def test_empty_batch():
    assert len(murmur2([])) == 0
