"""Nodes that die or stop answering: failover, quorum errors and timeouts."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Callable, List

import pytest

import chorus
from conftest import DevCluster

B = "pytest-faults"


def test_keys_stay_readable_at_quorum_with_a_node_killed(
    start_cluster: Callable[..., DevCluster],
) -> None:
    cluster = start_cluster(3)
    c = chorus.Client.connect(cluster.client_toml)
    keys = [f"k{i}" for i in range(20)]
    for k in keys:
        c.put(B, k, k.encode(), w="all")

    # With N=3 on 3 nodes every node holds every key; kill one holding the first key.
    first = c.ring(key=keys[0], bucket=B)["preference_list"][0]
    cluster.kill(int(first[1:]))

    for k in keys:
        assert c.get(B, k, r="quorum").values == [k.encode()]
    with pytest.raises(chorus.QuorumError) as short:
        c.get(B, keys[0], r="all")
    assert short.value.needed == 3
    assert short.value.answered < 3
    # Writes at quorum go on too.
    read = c.get(B, keys[0])
    c.put(B, keys[0], b"after", context=read.context, w="quorum")
    assert c.get(B, keys[0], r=2).values == [b"after"]
    c.close()


def test_a_stopped_node_times_out_the_request_with_the_gil_released(
    start_cluster: Callable[..., DevCluster],
) -> None:
    cluster = start_cluster(3)
    # Only n1, not token-aware, and a connection that outlives the request's deadline: the
    # request has nowhere else to go and must end on the client's timeout.
    cfg = cluster.config(
        "n1-only.toml",
        addresses=f'["127.0.0.1:{cluster.base_port}"]',
        token_aware="false",
        timeout='"700ms"',
        idle_timeout='"30s"',
    )
    c = chorus.Client.connect(cfg)
    c.put(B, "k", b"v")

    ticks: List[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    cluster.signal(1, signal.SIGSTOP)
    ticker = threading.Thread(target=tick)
    try:
        ticker.start()
        started = time.monotonic()
        with pytest.raises(chorus.ChorusTimeout) as late:
            c.get(B, "k")
        ended = time.monotonic()
    finally:
        done.set()
        ticker.join()
        cluster.signal(1, signal.SIGCONT)
    assert isinstance(late.value, TimeoutError)
    assert ended - started >= 0.6
    # Another Python thread ran while the call waited.
    assert any(started + 0.1 < t < ended - 0.1 for t in ticks)
    # Once the node runs again, so does the client.
    assert c.get(B, "k").values == [b"v"]
    c.close()


def test_a_cancelled_async_call_leaves_the_client_usable(
    start_cluster: Callable[..., DevCluster],
) -> None:
    cluster = start_cluster(3)
    cfg = cluster.config(
        "n1-only.toml",
        addresses=f'["127.0.0.1:{cluster.base_port}"]',
        token_aware="false",
        idle_timeout='"30s"',
    )

    async def main() -> None:
        async with await chorus.AsyncClient.connect(cfg) as c:
            await c.put(B, "k", b"v")
            cluster.signal(1, signal.SIGSTOP)
            try:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.get(B, "k"), 0.3)
            finally:
                cluster.signal(1, signal.SIGCONT)
            assert (await c.get(B, "k")).values == [b"v"]

    asyncio.run(main())
