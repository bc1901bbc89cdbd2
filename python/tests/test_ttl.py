"""Time to live and `lww` buckets against live clusters started with bucket settings."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

import chorus
from conftest import DevCluster

B = "pytest"


def wait_until(check, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_value_with_a_ttl_expires_and_others_stay(client: chorus.Client, key: str) -> None:
    client.put(B, key, b"short", ttl=1.5, w="all")
    client.put(B, key + "-td", b"td", ttl=datetime.timedelta(seconds=1), w="all")
    client.put(B, key + "-kept", b"kept", w="all")
    assert client.get(B, key).values == [b"short"]
    wait_until(lambda: not client.get(B, key).found, 15, "the ttl value to expire")
    wait_until(lambda: not client.get(B, key + "-td").found, 15, "the timedelta ttl")
    assert client.get(B, key + "-kept").values == [b"kept"]
    # The expired read's context supersedes the expired value.
    read = client.get(B, key)
    assert read.values == []
    client.put(B, key, b"again", context=read.context)
    assert client.get(B, key).values == [b"again"]


def test_put_many_takes_a_ttl(client: chorus.Client, key: str) -> None:
    out = client.put_many(B, [(key + "-a", b"1"), (key + "-b", b"2")], ttl=1)
    assert all(isinstance(c, bytes) for c in out), out
    got = client.get_many(B, [key + "-a", key + "-b"], r="all")
    assert [g.values for g in got] == [[b"1"], [b"2"]]
    wait_until(
        lambda: not any(g.found for g in client.get_many(B, [key + "-a", key + "-b"])),
        15,
        "the batch's ttl",
    )


@pytest.fixture(scope="module")
def lww_cluster(start_cluster) -> DevCluster:
    return start_cluster(
        3,
        settings=[
            "cluster.buckets.hot.conflicts=lww",
            "cluster.buckets.cache.ttl=1s",
        ],
    )


def test_an_lww_bucket_keeps_one_value_and_a_bucket_ttl_applies(lww_cluster: DevCluster) -> None:
    c = chorus.Client.connect(lww_cluster.client_toml)
    errors = []

    def writer(t: int) -> None:
        try:
            for i in range(5):
                c.put("hot", "k", f"{t}-{i}".encode())
                c.put("plain", "k", f"{t}-{i}".encode())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(c.get("hot", "k", r="all").values) == 1
    # The negative control: a siblings bucket keeps the concurrent blind writes.
    assert len(c.get("plain", "k", r="all").values) > 1
    # The bucket default TTL.
    c.put("cache", "k", b"v", w="all")
    assert c.get("cache", "k").values == [b"v"]
    wait_until(lambda: not c.get("cache", "k").found, 15, "the bucket's default ttl")
    c.close()
