"""The asyncio client: the same calls as awaitables, many in flight at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import chorus
from conftest import DevCluster

B = "pytest-async"


def test_concurrent_gets_with_gather(cluster: DevCluster) -> None:
    prefix = uuid.uuid4().hex

    async def main() -> None:
        c = await chorus.AsyncClient.connect(str(cluster.client_toml))
        keys = [f"{prefix}-{i}" for i in range(64)]
        contexts = await asyncio.gather(*(c.put(B, k, k.encode()) for k in keys))
        assert all(isinstance(ctx, bytes) and ctx for ctx in contexts)
        reads = await asyncio.gather(*(c.get(B, k) for k in keys))
        assert [r.values for r in reads] == [[k.encode()] for k in keys]
        c.close()

    asyncio.run(main())


def test_contexts_delete_and_reports(cluster: DevCluster) -> None:
    key = uuid.uuid4().hex

    async def main() -> None:
        async with await chorus.AsyncClient.connect(cluster.client_toml) as c:
            await c.put(B, key, b"v0")
            old = (await c.get(B, key)).context
            await c.put(B, key, b"a", context=old)
            await c.put(B, key, b"b", context=old)
            both = await c.get(B, key)
            assert sorted(both.values) == [b"a", b"b"]
            await c.delete(B, key, both.context)
            assert (await c.get(B, key)).found is False

            st = await c.status()
            assert sorted(n["id"] for n in st["nodes"]) == ["n1", "n2", "n3"]
            where = await c.ring(key=key, bucket=B)
            assert len(where["preference_list"]) == 3

    asyncio.run(main())


def test_errors_are_raised_by_the_await(cluster: DevCluster) -> None:
    async def main() -> None:
        c = await chorus.AsyncClient.connect(cluster.client_toml)
        # Refused by the node (N=3), so the error comes back through the awaitable.
        with pytest.raises(chorus.InvalidArgument, match="out of range"):
            await c.get(B, "k", r=4)
        with pytest.raises(chorus.PermissionDenied):
            await c.leave("n3")
        with pytest.raises(chorus.InvalidArgument, match="ttl"):
            await c.put(B, "k", b"x", ttl=0)
        c.close()
        with pytest.raises(chorus.ChorusError, match="closed"):
            await c.get(B, "k")

    asyncio.run(main())


def test_a_missing_config_is_not_found() -> None:
    async def main() -> None:
        with pytest.raises(chorus.NotFound):
            await chorus.AsyncClient.connect("does/not/exist.toml")

    asyncio.run(main())


def test_calls_are_coroutines_made_before_a_loop_runs(cluster: DevCluster) -> None:
    loop = asyncio.new_event_loop()
    try:
        connecting = chorus.AsyncClient.connect(cluster.client_toml)
        assert asyncio.iscoroutine(connecting)
        c = loop.run_until_complete(connecting)
        reading = c.get(B, uuid.uuid4().hex)
        assert asyncio.iscoroutine(reading)
        assert loop.run_until_complete(reading).found is False
        c.close()
    finally:
        loop.close()
