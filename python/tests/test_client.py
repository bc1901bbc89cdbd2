"""The blocking client against a live 3-node cluster: reads, writes, contexts, levels."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

import chorus
from conftest import DevCluster, chorus_bin

B = "pytest"


def test_put_then_get_round_trips(client: chorus.Client, key: str) -> None:
    ctx = client.put(B, key, b"engineer", w="all")
    assert isinstance(ctx, bytes) and ctx
    read = client.get(B, key)
    assert read.found is True
    assert read.values == [b"engineer"]
    assert isinstance(read.context, bytes) and read.context
    assert read.siblings == 1
    assert read.truncated is False


def test_str_is_utf8_and_names_the_same_key_as_bytes(client: chorus.Client, key: str) -> None:
    client.put(B, key, "héllo")
    read = client.get(B.encode(), key.encode())
    assert read.values == ["héllo".encode("utf-8")]
    client.put(B.encode(), key.encode(), bytearray(b"\x00\xff"), context=read.context)
    assert client.get(B, key).values == [b"\x00\xff"]


def test_a_missing_key_is_not_found(client: chorus.Client, key: str) -> None:
    read = client.get(B, key)
    assert read.found is False
    assert read.values == []
    assert isinstance(read.context, bytes)


def test_writes_with_the_same_old_context_are_siblings_until_a_merged_write(
    client: chorus.Client, key: str
) -> None:
    # Quorum writes and reads (W + R > N): every read meets every earlier write.
    client.put(B, key, b"v0")
    old = client.get(B, key).context
    client.put(B, key, b"left", context=old)
    client.put(B, key, b"right", context=old)
    both = client.get(B, key)
    assert sorted(both.values) == [b"left", b"right"]
    assert both.siblings == 2

    client.put(B, key, b"merged", context=both.context)
    assert client.get(B, key).values == [b"merged"]


def test_a_write_without_context_does_not_overwrite(client: chorus.Client, key: str) -> None:
    client.put(B, key, b"first")
    client.put(B, key, b"second")
    assert sorted(client.get(B, key).values) == [b"first", b"second"]


def test_delete_removes_what_the_read_saw(client: chorus.Client, key: str) -> None:
    client.put(B, key, b"doomed")
    read = client.get(B, key)
    assert isinstance(client.delete(B, key, read.context), bytes)
    gone = client.get(B, key)
    assert gone.found is False
    assert gone.values == []


def test_delete_keeps_a_write_its_context_did_not_see(client: chorus.Client, key: str) -> None:
    client.put(B, key, b"seen")
    read = client.get(B, key)
    client.put(B, key, b"unseen")  # no context: concurrent with the read
    client.delete(B, key, read.context)
    assert client.get(B, key).values == [b"unseen"]


# Each pair overlaps (W + R > N = 3), so the read must see the write.
@pytest.mark.parametrize(
    "w, r",
    [("one", "all"), ("quorum", "quorum"), ("all", "one"), ("ALL", "One"), (1, 3), (2, 2), (3, 1)],
)
def test_levels_by_name_and_count(client: chorus.Client, key: str, w: object, r: object) -> None:
    client.put(B, key, b"x", w=w)
    assert client.get(B, key, r=r).values == [b"x"]


@pytest.mark.parametrize("level", ["sometimes", "", 0, -1, True, 2.0, [2]])
def test_a_bad_level_is_invalid_argument(client: chorus.Client, key: str, level: object) -> None:
    with pytest.raises(chorus.InvalidArgument):
        client.get(B, key, r=level)
    with pytest.raises(chorus.InvalidArgument):
        client.put(B, key, b"x", w=level)
    assert client.get(B, key).found is False


def test_a_level_above_n_is_refused_by_the_node(client: chorus.Client, key: str) -> None:
    # A count passes the client's own check; the node knows N=3 and refuses 4.
    with pytest.raises(chorus.InvalidArgument, match="out of range"):
        client.get(B, key, r=4)
    with pytest.raises(chorus.InvalidArgument, match="out of range"):
        client.put(B, key, b"x", w=4)


def test_a_bad_ttl_is_refused_before_anything_is_written(client: chorus.Client, key: str) -> None:
    for bad in (0, -1, float("nan"), 20 * 365 * 24 * 3600):
        with pytest.raises(chorus.InvalidArgument, match="ttl"):
            client.put(B, key, b"x", ttl=bad)
    with pytest.raises(TypeError, match="ttl"):
        client.put(B, key, b"x", ttl="60s")  # type: ignore[arg-type]
    assert client.get(B, key).found is False
    client.put(B, key, b"x", ttl=None)
    assert client.get(B, key).found is True


def test_names_and_values_must_be_bytes_or_str(client: chorus.Client, key: str) -> None:
    with pytest.raises(TypeError, match="key must be bytes or str"):
        client.get(B, 17)
    with pytest.raises(TypeError, match="value must be bytes or str"):
        client.put(B, key, 1.5)
    with pytest.raises(TypeError, match="context must be bytes"):
        client.put(B, key, b"x", context="not bytes")


def _cli_json(cluster: DevCluster, *args: str) -> dict:
    out = subprocess.run(
        [str(chorus_bin()), "--config", str(cluster.client_toml), *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_status_has_the_shape_of_the_cli_json(client: chorus.Client, cluster: DevCluster) -> None:
    st = client.status()
    assert sorted(n["id"] for n in st["nodes"]) == ["n1", "n2", "n3"]
    assert all(n["status"] == "up" for n in st["nodes"])
    assert all(isinstance(n["hints_pending"], int) for n in st["nodes"])
    assert isinstance(st["transfers_pending"], int)
    assert isinstance(st["tombstones_purged"], int)
    cli = _cli_json(cluster, "status")
    assert set(st) == set(cli)
    assert set(st["nodes"][0]) == set(cli["nodes"][0])
    assert set(st["anti_entropy"]) == set(cli["anti_entropy"])


def test_ring_for_a_key_matches_the_cli(client: chorus.Client, cluster: DevCluster, key: str) -> None:
    mine = client.ring(key=key, bucket=B)
    assert len(mine["preference_list"]) == 3
    assert mine == _cli_json(cluster, "ring", "--key", key, "--bucket", B)
    whole = client.ring()
    assert whole == _cli_json(cluster, "ring")
    assert whole["n"] == 3


def test_a_closed_client_refuses_calls(cluster: DevCluster, key: str) -> None:
    with chorus.Client.connect(str(cluster.client_toml)) as c:
        c.put(B, key, b"x")
    with pytest.raises(chorus.ChorusError, match="closed"):
        c.get(B, key)


def test_threads_share_one_client(client: chorus.Client, key: str) -> None:
    keys = [f"{key}-{i}" for i in range(16)]
    for k in keys:
        client.put(B, k, k.encode())
    got: dict = {}

    def read(k: str) -> None:
        got[k] = client.get(B, k).values

    threads = [threading.Thread(target=read, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {k: [k.encode()] for k in keys}
