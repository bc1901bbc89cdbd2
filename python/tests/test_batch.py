"""Batch calls, ``get_many`` and ``put_many``, on both clients against a live cluster."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import chorus
from conftest import DevCluster

B = "pytest-batch"


def test_put_many_then_get_many_keeps_order_and_reports_missing_keys(client: chorus.Client) -> None:
    prefix = uuid.uuid4().hex
    keys = [f"{prefix}-{i}" for i in range(100)]
    out = client.put_many(B, [(k, k.encode()) for k in keys], w="all")
    assert len(out) == 100
    assert all(isinstance(c, bytes) and c for c in out)

    asked = list(reversed(keys)) + [f"{prefix}-missing"]
    reads = client.get_many(B, asked)
    assert len(reads) == len(asked)
    for k, r in zip(asked[:-1], reads[:-1]):
        assert isinstance(r, chorus.GetResult)
        assert r.found and r.values == [k.encode()]
    assert reads[-1].found is False and reads[-1].values == []


def test_contexts_from_get_many_resolve_siblings_and_delete(client: chorus.Client, key: str) -> None:
    client.put(B, key, b"left")
    client.put(B, key, b"right")
    (both,) = client.get_many(B, [key], r="all")
    assert sorted(both.values) == [b"left", b"right"]
    (ctx,) = client.put_many(B, [{"key": key, "value": b"merged", "context": both.context}])
    assert isinstance(ctx, bytes)
    assert client.get(B, key, r="all").values == [b"merged"]
    (read,) = client.get_many(B, [key])
    (done,) = client.put_many(B, [{"key": key, "value": None, "context": read.context}])
    assert isinstance(done, bytes)
    assert client.get(B, key).found is False


def test_a_failed_key_is_reported_in_place_while_the_others_succeed(client: chorus.Client) -> None:
    prefix = uuid.uuid4().hex
    too_big = b"x" * (8 * 1024 * 1024 + 1)
    out = client.put_many(B, [(f"{prefix}-a", b"1"), (f"{prefix}-big", too_big), (f"{prefix}-b", b"2")])
    assert isinstance(out[0], bytes) and isinstance(out[2], bytes)
    assert isinstance(out[1], chorus.TooLarge), out[1]
    reads = client.get_many(B, [f"{prefix}-a", f"{prefix}-big", f"{prefix}-b"])
    assert [r.values for r in reads] == [[b"1"], [], [b"2"]]


def test_a_batch_over_the_limit_is_refused_whole(client: chorus.Client) -> None:
    with pytest.raises(chorus.InvalidArgument, match="max_batch_keys"):
        client.get_many(B, [f"k{i}" for i in range(1001)])
    with pytest.raises(chorus.InvalidArgument, match="max_batch_keys"):
        client.put_many(B, [(f"k{i}", b"v") for i in range(1001)])


def test_bad_arguments_raise_before_sending(client: chorus.Client) -> None:
    with pytest.raises(TypeError):
        client.get_many(B, "one-key-not-a-list")
    with pytest.raises(TypeError):
        client.put_many(B, [("k",)])
    with pytest.raises(KeyError):
        client.put_many(B, [{"value": b"v"}])


def test_async_get_many_and_put_many(cluster: DevCluster) -> None:
    prefix = uuid.uuid4().hex
    keys = [f"{prefix}-{i}" for i in range(20)]

    async def main() -> None:
        async with await chorus.AsyncClient.connect(cluster.client_toml) as c:
            out = await c.put_many(B, [{"key": k, "value": k} for k in keys], w="quorum")
            assert all(isinstance(x, bytes) for x in out)
            reads = await c.get_many(B, keys, r="quorum")
            assert [r.values for r in reads] == [[k.encode()] for k in keys]

    asyncio.run(main())
