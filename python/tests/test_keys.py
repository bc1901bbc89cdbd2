"""Key listing (``keys``) and bucket truncation (``truncate``) on both clients."""

from __future__ import annotations

import asyncio
import uuid
from typing import List, Optional

import pytest

import chorus
from conftest import DevCluster


def page_through(client: chorus.Client, bucket: str, prefix: Optional[str], limit: int) -> List[bytes]:
    out: List[bytes] = []
    after = None
    for _ in range(1000):
        page = client.keys(bucket, prefix=prefix, limit=limit, after=after)
        assert isinstance(page, chorus.KeyPage)
        assert len(page.keys) <= limit
        out.extend(page.keys)
        keys, after = page  # unpacks as a pair
        assert keys == page.keys
        if after is None:
            return out
        assert isinstance(after, str)
    raise AssertionError("listing never ended")


def test_paging_returns_every_key_once_in_order_with_prefixes(client: chorus.Client) -> None:
    bucket = f"pytest-keys-{uuid.uuid4().hex[:8]}"
    keys = [f"{p}/{i:03}" for i, p in zip(range(300), ["user", "us", "item"] * 100)]
    out = client.put_many(bucket, [(k, b"v") for k in keys], w="all")
    assert all(isinstance(c, bytes) for c in out)
    # A bucket whose name extends this one's, with the same keys: never listed with it.
    client.put_many(bucket + "x", [(k, b"v") for k in keys], w="all")

    want = sorted(k.encode() for k in keys)
    assert page_through(client, bucket, None, 40) == want
    assert page_through(client, bucket, "user/", 7) == [k for k in want if k.startswith(b"user/")]
    assert page_through(client, bucket, b"us", 1000) == [k for k in want if k.startswith(b"us")]

    # Deleted keys are not listed.
    read = client.get(bucket, keys[0], r="all")
    client.delete(bucket, keys[0], read.context, w="all")
    assert keys[0].encode() not in page_through(client, bucket, None, 1000)


def test_bad_tokens_and_limits_are_invalid_arguments(client: chorus.Client) -> None:
    with pytest.raises(chorus.InvalidArgument, match="malformed page token"):
        client.keys("pytest-keys", after="not-a-token")
    with pytest.raises(chorus.InvalidArgument, match="maximum"):
        client.keys("pytest-keys", limit=20000)


def test_async_keys_and_truncate(cluster: DevCluster) -> None:
    bucket = f"pytest-akeys-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        c = await chorus.AsyncClient.connect(cluster.client_toml)
        admin = await chorus.AsyncClient.connect(cluster.admin_toml)
        await c.put_many(bucket, [(f"k{i:02}", b"v") for i in range(30)], w="all")
        page = await c.keys(bucket, limit=10)
        assert page.keys == [f"k{i:02}".encode() for i in range(10)]
        rest = await c.keys(bucket, limit=100, after=page.next)
        assert len(rest.keys) == 20 and rest.next is None
        with pytest.raises(chorus.PermissionDenied):
            await c.truncate(bucket)
        assert await admin.truncate(bucket) == 30
        assert (await c.keys(bucket)).keys == []
        c.close()
        admin.close()

    asyncio.run(run())


def test_truncate_needs_an_admin_and_spares_other_buckets(
    client: chorus.Client, cluster: DevCluster
) -> None:
    bucket = f"pytest-trunc-{uuid.uuid4().hex[:8]}"
    keep = bucket + "-keep"
    keys = [f"k{i}" for i in range(50)]
    client.put_many(bucket, [(k, b"v") for k in keys], w="all")
    client.put_many(keep, [(k, b"v") for k in keys], w="all")

    with pytest.raises(chorus.PermissionDenied, match="permission denied"):
        client.truncate(bucket)
    assert len(client.keys(bucket).keys) == 50

    with chorus.Client.connect(cluster.admin_toml) as admin:
        assert admin.truncate(bucket) == 50
        assert admin.truncate(bucket) == 0
    assert client.keys(bucket).keys == []
    assert all(not r.found for r in client.get_many(bucket, keys, r="all"))
    # Control: the other bucket is untouched.
    assert len(client.keys(keep).keys) == 50
    assert all(r.found for r in client.get_many(keep, keys, r="all"))
