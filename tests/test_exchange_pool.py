"""Exchanges used again: the flusher hands back those nothing else holds, requests take them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from predlog.flush import ExchangeDecoder
from predlog.testing import CAPTURE_FIELDS, Exchange

DECODER = ExchangeDecoder()
FEATURES = CAPTURE_FIELDS.index("features")
take = Exchange.take
recycle = Exchange.recycle


def _empty() -> None:
    while Exchange.pooled():
        take("POST", "/", DECODER)


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    _empty()
    yield
    _empty()


def used(request: bytes = b'{"a": 1}', response: bytes = b'{"s": 1}') -> Exchange:
    """An exchange as a request leaves it, with every field set away from its default."""
    ex = take("PUT", "/old", ExchangeDecoder(score_field="other"))
    ex.request_chunks.append(request)
    ex.request_size = len(request)
    ex.request_content_type = b"text/plain"
    ex.response_chunks.append(response)
    ex.response_size = len(response)
    ex.response_parts = 2
    ex.response_content_type = b"text/plain"
    ex.status = 500
    ex.streamed = True
    ex.handler_failed = True
    ex.invalid_request_id = "bad id"
    ex.request_id_repeated = True
    ex.fields["score"] = 0.5
    return ex


def capture_of(ex: Exchange) -> tuple[object, ...]:
    return (1, "rid", ex, *(None,) * (len(CAPTURE_FIELDS) - FEATURES - 1))


class TestRecycle:
    def test_a_recycled_exchange_comes_back_as_new(self) -> None:
        """The next request gets the recycled exchange, with every field as a new one has it."""
        ex = used()
        ex_id = id(ex)
        captures = [capture_of(ex)]
        del ex
        recycle(captures)
        captures.clear()
        again = take("POST", "/predict", DECODER)
        assert id(again) == ex_id
        fresh = Exchange("POST", "/predict", DECODER)
        for name in Exchange.__slots__:
            assert getattr(again, name) == getattr(fresh, name), name
        assert again.decoder is DECODER

    def test_the_last_requests_fields_dict_is_never_reused(self) -> None:
        """A handler's fields dict stays its own: the next request records into a new one."""
        ex = used()
        fields = ex.fields
        captures = [capture_of(ex)]
        del ex
        recycle(captures)
        captures.clear()
        again = take("POST", "/predict", DECODER)
        again.fields["score"] = 0.9
        assert fields == {"score": 0.5}

    def test_a_capture_held_elsewhere_keeps_its_exchange(self) -> None:
        """A capture someone kept (a sink, a test, a report) never sees its exchange change."""
        kept = capture_of(used())
        captures = [kept]
        recycle(captures)
        captures.clear()
        assert not Exchange.pooled()
        assert take("POST", "/new", DECODER) is not kept[FEATURES]
        assert kept[FEATURES].request_chunks == [b'{"a": 1}']

    def test_an_exchange_held_elsewhere_is_not_reused(self) -> None:
        """An exchange someone kept apart from its capture is not handed out again."""
        ex = used()
        captures = [capture_of(ex)]
        recycle(captures)
        captures.clear()
        assert not Exchange.pooled()
        assert ex.status == 500

    def test_a_chunk_list_held_elsewhere_is_replaced_not_emptied(self) -> None:
        """A body list someone kept keeps its chunks; the exchange gets a new list."""
        ex = used()
        chunks = ex.request_chunks
        captures = [capture_of(ex)]
        del ex
        recycle(captures)
        captures.clear()
        assert chunks == [b'{"a": 1}']
        again = take("POST", "/predict", DECODER)
        assert again.request_chunks == []
        assert again.request_chunks is not chunks

    def test_captures_without_an_exchange_are_left_alone(self) -> None:
        """log()'s captures hold features, not an exchange: nothing to recycle."""
        captures = [capture_of({"x": 1}), ("short",), "not a tuple"]  # type: ignore[arg-type]
        recycle(captures)
        assert not Exchange.pooled()

    def test_the_pool_is_bounded(self) -> None:
        """Past its bound, the pool lets recycled exchanges go instead of growing."""
        bound = Exchange.POOL_BOUND
        captures = [capture_of(Exchange("POST", "/", DECODER)) for _ in range(bound + 10)]
        recycle(captures)
        assert Exchange.pooled() == bound


class TestRequestsLeaveLess:
    def test_a_request_with_a_recycled_exchange_leaves_fewer_tracked_objects(self) -> None:
        """Taking a recycled exchange allocates no exchange and no chunk list."""
        captures = [capture_of(Exchange("POST", "/", DECODER)) for _ in range(100)]
        recycle(captures)
        captures.clear()
        gc.collect()
        before = len(gc.get_objects())
        taken = [take("POST", "/", DECODER) for _ in range(100)]
        assert len(gc.get_objects()) - before < 10
        assert len({id(ex) for ex in taken}) == 100
