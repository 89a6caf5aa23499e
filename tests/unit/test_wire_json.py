"""Parsing untrusted JSON (``app.wire._json``)."""

import pytest

from app.wire._json import MAX_DEPTH, loads


def test_a_documents_values_are_its_own_not_a_cache_of_earlier_ones():
    """String values are not kept by the parser's cache: the same prompt in two
    requests gives two strings, and neither outlives its request."""
    document = b'{"messages": [{"role": "user", "content": "the same short prompt"}]}'
    first, second = loads(document), loads(document)
    assert first == second
    first_content = first["messages"][0]["content"]
    assert first_content is not second["messages"][0]["content"]


def test_nesting_past_the_limit_is_a_value_error():
    assert loads("[" * (MAX_DEPTH // 2) + "]" * (MAX_DEPTH // 2)) is not None
    with pytest.raises(ValueError):
        loads("[" * 100_000)
