from __future__ import annotations

import threading
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from predlog.testing import RingBuffer


class RingModel(RuleBasedStateMachine):
    """Random puts and drains against a plain deque that says what must happen."""

    capacity = 1
    overflow = "drop_newest"

    def __init__(self) -> None:
        super().__init__()
        self.ring: RingBuffer[int] = RingBuffer(self.capacity, overflow=self.overflow)
        self.model: deque[int] = deque()
        self.dropped = 0
        self.next_value = 0

    def _offer_to_model(self, value: int) -> bool:
        if len(self.model) < self.capacity:
            self.model.append(value)
            return True
        self.dropped += 1
        if self.overflow == "drop_oldest" and self.model:
            self.model.popleft()
            self.model.append(value)
            return True
        return False

    @rule(count=st.integers(min_value=1, max_value=20))
    def put(self, count: int) -> None:
        for _ in range(count):
            value = self.next_value
            self.next_value += 1
            expected = self._offer_to_model(value)
            assert self.ring.put(value) is expected

    @rule(limit=st.integers(min_value=0, max_value=30))
    def drain(self, limit: int) -> None:
        got = self.ring.drain(limit)
        expected = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert got == expected

    @invariant()
    def accounting(self) -> None:
        assert self.ring.dropped == self.dropped
        assert len(self.ring) == len(self.model)
        assert len(self.ring) <= self.ring.capacity


def _machine(capacity: int, overflow: str) -> type[RingModel]:
    return type(
        f"Ring_{overflow}_{capacity}",
        (RingModel,),
        {"capacity": capacity, "overflow": overflow},
    )


TestRingDropNewestSmall = _machine(3, "drop_newest").TestCase
TestRingDropNewestLarge = _machine(17, "drop_newest").TestCase
TestRingDropOldestSmall = _machine(3, "drop_oldest").TestCase
TestRingDropOldestLarge = _machine(17, "drop_oldest").TestCase


class TestRingBuffer:
    @given(
        capacity=st.integers(min_value=1, max_value=64),
        values=st.lists(st.integers(), max_size=200),
    )
    def test_fifo_and_bounded(self, capacity, values):
        """Whatever is offered, the ring holds at most capacity and returns values in order."""
        ring: RingBuffer[int] = RingBuffer(capacity)
        accepted = [v for v in values if ring.put(v)]
        assert len(accepted) == min(len(values), capacity)
        assert ring.dropped == len(values) - len(accepted)
        assert ring.drain(10_000) == accepted

    def test_values_are_held_by_reference(self):
        """The ring stores the object itself: nothing is copied on the way in."""
        ring: RingBuffer[dict[str, int]] = RingBuffer(4)
        payload = {"a": 1}
        ring.put(payload)
        assert ring.drain(1)[0] is payload

    def test_rejects_bad_arguments(self):
        """A zero capacity or an unknown policy is refused, naming the argument."""
        with pytest.raises(ValueError, match="capacity"):
            RingBuffer(0)
        with pytest.raises(ValueError, match="overflow"):
            RingBuffer(4, overflow="block")

    def test_many_producers_one_consumer(self):
        """Under contention every value is either drained exactly once or counted dropped."""
        ring: RingBuffer[tuple[int, int]] = RingBuffer(64)
        stop = threading.Event()
        drained: list[tuple[int, int]] = []

        def consume() -> None:
            while not stop.is_set() or len(ring):
                drained.extend(ring.drain(16))

        def produce(worker: int) -> None:
            for i in range(20_000):
                ring.put((worker, i))

        consumer = threading.Thread(target=consume)
        consumer.start()
        producers = [threading.Thread(target=produce, args=(w,)) for w in range(6)]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        stop.set()
        consumer.join()
        assert len(set(drained)) == len(drained)
        assert len(drained) + ring.dropped == 6 * 20_000
        for worker in range(6):
            mine = [i for w, i in drained if w == worker]
            assert mine == sorted(mine)
