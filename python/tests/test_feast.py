"""The Feast online store on Chorus, end to end, with Feast's SQLite store as the oracle:
the same feature repository is materialized into both and must read back identically."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

feast = pytest.importorskip(
    "feast", reason="Feast is not installed (pip install './python[feast]')"
)

import chorus  # noqa: E402
import feast_repo as repo  # noqa: E402
import pandas as pd  # noqa: E402  (comes with feast)
from chorus.feast import _record, _store  # noqa: E402
from chorus.feast._store import ChorusOnlineStore, _has_param  # noqa: E402
from conftest import DevCluster  # noqa: E402
from feast.infra.key_encoding_utils import serialize_entity_key  # noqa: E402
from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # noqa: E402
from feast.protos.feast.types.Value_pb2 import Value  # noqa: E402

N = 1200  # over the batch limit, so reads and writes take more than one get_many
END = repo.T0 + timedelta(days=1)
HAS_TRUNCATE = hasattr(chorus.Client, "truncate")


def chorus_config(cluster: DevCluster, **extra: Any) -> Dict[str, Any]:
    cfg = {"type": "chorus.feast.ChorusOnlineStore", "client_config": str(cluster.client_toml)}
    cfg.update(extra)
    return cfg


SQLITE = {"type": "sqlite", "path": "online.db"}


def pair(tmp_path: Path, cluster: DevCluster, df: pd.DataFrame, **extra: Any):
    """A Chorus-backed store and the SQLite oracle over the same parquet file."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    parquet = tmp_path / "drivers.parquet"
    df.to_parquet(parquet)
    project = "p" + uuid.uuid4().hex[:12]
    ours = repo.store(tmp_path / "chorus", project, chorus_config(cluster, **extra), parquet)
    oracle = repo.store(tmp_path / "sqlite", project, SQLITE, parquet)
    return ours, oracle, parquet


def online_store(fs: "feast.FeatureStore") -> ChorusOnlineStore:
    s = fs._get_provider().online_store
    assert isinstance(s, ChorusOnlineStore)
    return s


def raw_key(driver_id: int) -> bytes:
    ek = EntityKey(join_keys=["driver_id"], entity_values=[Value(int64_val=driver_id)])
    return serialize_entity_key(ek, entity_key_serialization_version=3)


def bucket(fs: "feast.FeatureStore", view: str = repo.VIEW) -> str:
    return f"feast.{fs.project}.{view}"


def assert_same(ours: Dict[str, List[Any]], oracle: Dict[str, List[Any]]) -> None:
    assert ours.keys() == oracle.keys()
    for col in oracle:
        diff = [i for i, (a, b) in enumerate(zip(ours[col], oracle[col])) if a != b]
        assert not diff and len(ours[col]) == len(oracle[col]), (
            f"{col}: {len(diff)} rows differ, first at {diff[:1]}: "
            f"{[ours[col][i] for i in diff[:3]]} vs {[oracle[col][i] for i in diff[:3]]}"
        )


# The stored form ---------------------------------------------------------------------


def test_record_round_trip_and_garbage() -> None:
    rec = _record.Record(5, 7, None, {"a": Value(int64_val=3), "é": Value(string_val="x")})
    assert _record.decode(_record.encode(rec)) == rec
    rec2 = _record.Record(-3, None, 99, {})
    assert _record.decode(_record.encode(rec2)) == rec2
    raw = _record.encode(rec)
    for bad in (b"", b"xx", raw[:-1], b"CF\x09" + raw[3:]):
        with pytest.raises(_record.RecordError):
            _record.decode(bad)


def test_newest_sibling_wins_by_event_then_created_time() -> None:
    def enc(event: int, created: Any = None, expires: Any = None) -> bytes:
        feats = {"v": Value(int64_val=event)}
        return _record.encode(_record.Record(event, created, expires, feats))

    assert _record.newest([enc(1), enc(3), enc(2)], now_ns=0).event_ns == 3
    assert _record.newest([enc(3, 1), enc(3, 2), b"junk"], now_ns=0).created_ns == 2
    # An expired sibling doesn't count, even if it is the newest.
    assert _record.newest([enc(1, None, 100), enc(3, None, 10)], now_ns=50).event_ns == 1
    assert _record.newest([enc(3, None, 10)], now_ns=10) is None
    # A newest sibling whose features are garbled yields to the next one.
    garbled = enc(9)[:-3] + b"\xff\xff\xff"
    assert _record.newest([enc(2), garbled], now_ns=0).event_ns == 2
    # Exact ties pick the same sibling whatever the order.
    a = _record.encode(_record.Record(1, None, None, {"v": Value(string_val="a")}))
    b = _record.encode(_record.Record(1, None, None, {"v": Value(string_val="b")}))
    assert _record.newest([a, b], 0) == _record.newest([b, a], 0)


# End to end against the SQLite oracle ----------------------------------------------


def test_materialize_matches_sqlite(tmp_path: Path, cluster: DevCluster) -> None:
    ours, oracle, _ = pair(tmp_path, cluster, repo.history(N))
    for fs in (ours, oracle):
        fs.materialize(repo.T0 - timedelta(days=1), END)
    ids = list(range(N)) + [N + 5, N + 6]  # two that were never written
    got = repo.read(ours, ids)
    want = repo.read(oracle, ids)
    assert_same(got, want)
    # Not vacuous: every written driver is found, with its newest row (hour 2).
    assert sum(v is not None for v in got["trips"]) == N
    newest = repo.rows([0, 1], [repo.T0 + timedelta(hours=2, seconds=s) for s in (0, 1)])
    assert got["trips"][:2] == list(newest["trips"])
    assert got["trips"][-1] is None
    # The rows are in Chorus, one value per key: nothing piled up as siblings.
    with chorus.Client.connect(cluster.client_toml) as c:
        reads = c.get_many(bucket(ours), [raw_key(i) for i in range(0, N, 97)])
        assert all(r.found and r.siblings == 1 for r in reads)


def test_second_materialization_newer_rows_win(tmp_path: Path, cluster: DevCluster) -> None:
    ours, oracle, parquet = pair(tmp_path, cluster, repo.history(600))
    for fs in (ours, oracle):
        fs.materialize(repo.T0 - timedelta(days=1), END)
    # Newer rows for the even drivers, appended to the same source.
    even = list(range(0, 600, 2))
    newer = repo.rows(even, [repo.T0 + timedelta(hours=5)] * len(even), salt=1)
    pd.concat([repo.history(600), newer]).to_parquet(parquet)
    for fs in (ours, oracle):
        fs.materialize(repo.T0 - timedelta(days=1), END + timedelta(days=1))
    got, want = repo.read(ours, range(600)), repo.read(oracle, range(600))
    assert_same(got, want)
    assert got["shifts"][0] == newer["shifts"][0] and got["shifts"][1] != newer["shifts"][0]


def test_older_rows_do_not_replace_newer(tmp_path: Path, cluster: DevCluster) -> None:
    """Feast keeps the newest event: a late, older row is dropped (SQLite would take it, so
    the expectation here is written out rather than read from the oracle)."""
    ours, _, _ = pair(tmp_path, cluster, repo.history(10))
    new_ts = [repo.T0 + timedelta(hours=3)] * 10
    old_ts = [repo.T0 + timedelta(hours=1)] * 10
    ours.write_to_online_store(repo.VIEW, repo.rows(range(10), new_ts))
    before = repo.read(ours, range(10))
    ours.write_to_online_store(repo.VIEW, repo.rows(range(10), old_ts, salt=7))
    assert repo.read(ours, range(10)) == before
    # Same event time, later created time: taken (Feast's tie-break).
    later = repo.rows(range(10), new_ts, salt=3)
    later["created"] = later["created"] + pd.Timedelta(seconds=1)
    ours.write_to_online_store(repo.VIEW, later)
    assert repo.read(ours, range(10))["shifts"] == list(later["shifts"])


def test_concurrent_writers_match_oracle(tmp_path: Path, cluster: DevCluster) -> None:
    """Materialization, pushes and direct writes from several threads, rows in random
    order; the oracle gets every row once, oldest first. The newest row per driver wins."""
    n = 600
    ours, oracle, _ = pair(tmp_path, cluster, repo.history(n))
    rng = random.Random(7)
    # Per driver: distinct event times, so "newest" is one row.
    pushed = []
    for i in range(n):
        hours = rng.sample(range(1, 40), 4)
        pushed += [(i, repo.T0 + timedelta(hours=h, seconds=i % 50)) for h in hours]
    rng.shuffle(pushed)
    frames = [
        repo.rows([p[0] for p in part], [p[1] for p in part], salt=2)
        for part in (pushed[k::6] for k in range(6))
    ]
    errors: List[BaseException] = []

    def run(f: Any, *args: Any) -> None:
        try:
            f(*args)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(ours.materialize, repo.T0, END))]
    for k, df in enumerate(frames):
        # Half through the push source, half written to the view directly.
        if k % 2:
            threads.append(threading.Thread(target=run, args=(ours.push, repo.PUSH, df)))
        else:
            threads.append(
                threading.Thread(target=run, args=(ours.write_to_online_store, repo.VIEW, df))
            )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    every = pd.concat([repo.history(n)] + frames).sort_values(["event_timestamp", "driver_id"])
    oracle.write_to_online_store(repo.VIEW, every)
    assert_same(repo.read(ours, range(n)), repo.read(oracle, range(n)))


def test_siblings_resolve_to_newest_and_collapse_on_write(
    tmp_path: Path, cluster: DevCluster
) -> None:
    ours, _, _ = pair(tmp_path, cluster, repo.history(3))
    b, k = bucket(ours), raw_key(1)

    def rec(hours: int, trips: int) -> bytes:
        ts = int((repo.T0 + timedelta(hours=hours)).timestamp()) * 10**9
        return _record.encode(_record.Record(ts, None, None, {"trips": Value(int64_val=trips)}))

    with chorus.Client.connect(cluster.client_toml) as c:
        # Two writers without a context: two siblings.
        c.put(b, k, rec(2, 222))
        c.put(b, k, rec(1, 111))
        assert c.get(b, k).siblings == 2
        assert repo.read(ours, [1], [f"{repo.VIEW}:trips"])["trips"] == [222]
        # A write through the store replaces both (it read their context first).
        ours.write_to_online_store(repo.VIEW, repo.rows([1], [repo.T0 + timedelta(hours=4)]))
        got = c.get(b, k)
        assert got.siblings == 1
        assert _record.decode(got.values[0]).event_ns > _record.decode(rec(2, 0)).event_ns


def test_key_ttl_hides_expired_rows(tmp_path: Path, cluster: DevCluster) -> None:
    ours, _, _ = pair(tmp_path, cluster, repo.history(20), key_ttl_seconds=60)
    store = online_store(ours)
    now = [store.clock()]
    store.clock = lambda: now[0]
    ts = [repo.T0 + timedelta(hours=1)] * 20
    ours.write_to_online_store(repo.VIEW, repo.rows(range(10), ts[:10]))
    now[0] += 30 * 10**9
    ours.write_to_online_store(repo.VIEW, repo.rows(range(10, 20), ts[10:]))
    assert all(v is not None for v in repo.read(ours, range(20))["trips"])
    now[0] += 31 * 10**9  # the first ten are 61 s old, the others 31 s
    trips = repo.read(ours, range(20))["trips"]
    assert trips[:10] == [None] * 10 and all(v is not None for v in trips[10:])
    # An expired row doesn't block an older one: expiry means "not there".
    ours.write_to_online_store(repo.VIEW, repo.rows([0], [repo.T0], salt=5))
    assert repo.read(ours, [0])["trips"] != [None]


@pytest.mark.skipif(
    not _has_param(chorus.Client.put_many, "ttl"),
    reason="this chorus client's put_many takes no ttl (server-side expiry not available)",
)
def test_key_ttl_is_passed_to_the_server(tmp_path: Path, cluster: DevCluster) -> None:
    import time

    ours, _, _ = pair(tmp_path, cluster, repo.history(5), key_ttl_seconds=1)
    ours.write_to_online_store(repo.VIEW, repo.rows(range(5), [repo.T0] * 5))
    deadline = time.monotonic() + 30
    with chorus.Client.connect(cluster.client_toml) as c:
        while any(r.found for r in c.get_many(bucket(ours), [raw_key(i) for i in range(5)])):
            assert time.monotonic() < deadline, "the server kept rows past their TTL"
            time.sleep(0.2)


def test_async_reads_and_writes_match_sync(tmp_path: Path, cluster: DevCluster) -> None:
    ours, oracle, _ = pair(tmp_path, cluster, repo.history(N))
    df = repo.rows(range(N), [repo.T0 + timedelta(hours=2)] * N)

    async def main() -> Tuple[Dict[str, Any], Dict[str, Any]]:
        await ours.write_to_online_store_async(repo.VIEW, df)
        ents = [{"driver_id": i} for i in range(N)]
        resp = await ours.get_online_features_async(features=repo.FEATURES, entity_rows=ents)
        # Both went through the asyncio client: the blocking one was never connected.
        assert online_store(ours)._aclient is not None and online_store(ours)._client is None
        return resp.to_dict(include_event_timestamps=True), repo.read(ours, range(N))

    got_async, got_sync = asyncio.run(main())
    oracle.write_to_online_store(repo.VIEW, df)
    assert_same(got_async, repo.read(oracle, range(N)))
    assert_same(got_sync, got_async)


@pytest.mark.skipif(not HAS_TRUNCATE, reason="this chorus client has no truncate yet")
def test_update_and_teardown_empty_the_buckets(tmp_path: Path, cluster: DevCluster) -> None:
    parquet = tmp_path / "drivers.parquet"
    repo.history(50).to_parquet(parquet)
    cfg = chorus_config(cluster, admin_config=str(cluster.admin_toml))
    project = "p" + uuid.uuid4().hex[:12]
    fs = repo.store(tmp_path / "chorus", project, cfg, parquet, views=[repo.VIEW, "extra"])
    fs.materialize(repo.T0 - timedelta(days=1), END)
    keys = [raw_key(i) for i in range(50)]
    with chorus.Client.connect(cluster.client_toml) as c:
        for view in (repo.VIEW, "extra"):
            assert all(r.found for r in c.get_many(bucket(fs, view), keys))
        # Dropping a view empties its bucket and leaves the other alone.
        fs.apply([], objects_to_delete=[fs.get_feature_view("extra")], partial=False)
        assert not any(r.found for r in c.get_many(bucket(fs, "extra"), keys))
        assert all(r.found for r in c.get_many(bucket(fs, repo.VIEW), keys))
        fs.teardown()
        assert not any(r.found for r in c.get_many(bucket(fs, repo.VIEW), keys))


def test_update_without_truncate_keeps_rows_and_says_so(
    tmp_path: Path, cluster: DevCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """No admin config: teardown can't empty the buckets; it warns instead of failing."""
    ours, _, _ = pair(tmp_path, cluster, repo.history(5))
    ours.materialize(repo.T0 - timedelta(days=1), END)
    with caplog.at_level("WARNING", logger="chorus.feast._store"):
        ours.teardown()
    assert f"the rows of {bucket(ours)} stay in Chorus" in caplog.text
    with chorus.Client.connect(cluster.client_toml) as c:
        assert c.get(bucket(ours), raw_key(0)).found


class Counting:
    """A client that counts the batch calls passing through it."""

    def __init__(self, inner: chorus.Client) -> None:
        self.inner = inner
        self.calls: List[Tuple[str, int]] = []

    def get_many(self, bucket: str, keys: List[bytes], **kw: Any) -> Any:
        self.calls.append(("get_many", len(keys)))
        return self.inner.get_many(bucket, keys, **kw)

    def put_many(self, bucket: str, items: List[Any], **kw: Any) -> Any:
        self.calls.append(("put_many", len(items)))
        return self.inner.put_many(bucket, items, **kw)


def test_one_get_many_per_batch_of_keys(tmp_path: Path, cluster: DevCluster) -> None:
    ours, _, _ = pair(tmp_path, cluster, repo.history(N))
    store = online_store(ours)
    spy = Counting(store.client(ours.config))
    store._client = spy  # type: ignore[assignment]
    ours.write_to_online_store(repo.VIEW, repo.rows(range(N), [repo.T0] * N))
    assert spy.calls == [
        ("get_many", 1000),
        ("put_many", 1000),
        ("get_many", 200),
        ("put_many", 200),
    ]
    spy.calls.clear()
    repo.read(ours, range(N))
    assert spy.calls == [("get_many", 1000), ("get_many", 200)]
    # A smaller server limit is honoured.
    ours2, _, _ = pair(tmp_path / "small", cluster, repo.history(10), max_batch_keys=4)
    store2 = online_store(ours2)
    spy2 = Counting(store2.client(ours2.config))
    store2._client = spy2  # type: ignore[assignment]
    repo.read(ours2, range(10))
    assert spy2.calls == [("get_many", 4), ("get_many", 4), ("get_many", 2)]


def test_chorus_imports_without_feast() -> None:
    """Feast stays optional: `import chorus` works without it, and `chorus.feast` says
    how to get it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['feast'] = None\n"  # as if Feast were not installed
        "import chorus; assert chorus.Client\n"
        "try:\n"
        "    import chorus.feast\n"
        "except ImportError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused: chorus.feast needs Feast: pip install 'chorus-client[feast]'" in out.stdout


class FakeClient:
    """Stands in for a client whose put_many takes ``ttl`` only as ``ttl_type``."""

    class Missing:
        found, values, context = False, [], b""

    def __init__(self, ttl_type: type) -> None:
        self.ttl_type = ttl_type
        self.ttls: List[Any] = []
        self.refused = 0

    def get_many(self, bucket: str, keys: List[bytes], r: Any = None) -> List[Any]:
        return [self.Missing() for _ in keys]

    def put_many(self, bucket: str, items: List[Any], w: Any = None, ttl: Any = None) -> Any:
        if not isinstance(ttl, self.ttl_type):
            self.refused += 1
            raise TypeError(f"ttl must be {self.ttl_type.__name__}")
        self.ttls.append(ttl)
        return [b"ctx"] * len(items)


class AsyncFakeClient(FakeClient):
    """The same stand-in, for the asyncio paths."""

    async def get_many(self, *a: Any, **kw: Any) -> List[Any]:  # type: ignore[override]
        return FakeClient.get_many(self, *a, **kw)

    async def put_many(self, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        return FakeClient.put_many(self, *a, **kw)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("ttl_type,refusals", [(int, 0), (timedelta, 1)])
def test_key_ttl_form_follows_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, ttl_type: type, refusals: int
) -> None:
    """Seconds first; a client that wants a timedelta gets one after its TypeError, and
    keeps getting one. No cluster: the client is a stand-in."""
    parquet = tmp_path / "drivers.parquet"
    repo.history(3).to_parquet(parquet)
    cfg = {"type": "chorus.feast.ChorusOnlineStore", "client_config": "none.toml"}
    fs = repo.store(tmp_path / "s", "pttl", dict(cfg, key_ttl_seconds=30), parquet)
    monkeypatch.setattr(_store, "_has_param", lambda fn, name: True)
    df = repo.rows(range(3), [repo.T0] * 3)
    if mode == "sync":
        fake = FakeClient(ttl_type)
        online_store(fs)._client = fake  # type: ignore[assignment]
        for _ in range(2):
            fs.write_to_online_store(repo.VIEW, df)
    else:
        fake = AsyncFakeClient(ttl_type)
        online_store(fs)._aclient = fake  # type: ignore[assignment]

        async def write_twice() -> None:
            for _ in range(2):
                await fs.write_to_online_store_async(repo.VIEW, df)

        asyncio.run(write_twice())
    assert fake.ttls == [ttl_type(seconds=30) if ttl_type is timedelta else 30] * 2
    assert fake.refused == refusals


def test_update_and_teardown_truncate_the_removed_views(
    tmp_path: Path, cluster: DevCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which buckets `feast apply` (removing a view) and `teardown` truncate, and with which
    config; the admin client is a stand-in, so this runs before the server has truncate."""
    import types

    truncated: List[Tuple[str, str]] = []

    class Admin:
        def __init__(self, path: str) -> None:
            self.path = path

        def truncate(self, b: str) -> None:
            truncated.append((self.path, b))

        def __enter__(self) -> "Admin":
            return self

        def __exit__(self, *exc: Any) -> bool:
            return False

    class Client:
        truncate = True  # what _truncate looks for

        @staticmethod
        def connect(path: str) -> Any:
            return Admin(path)

    parquet = tmp_path / "drivers.parquet"
    repo.history(5).to_parquet(parquet)
    cfg = chorus_config(cluster, admin_config="admin.toml")
    project = "p" + uuid.uuid4().hex[:12]
    fs = repo.store(tmp_path / "chorus", project, cfg, parquet, views=[repo.VIEW, "extra"])
    online_store(fs).client(fs.config)  # the data client, connected before the swap
    monkeypatch.setattr(_store, "chorus", types.SimpleNamespace(Client=Client))
    fs.apply([], objects_to_delete=[fs.get_feature_view("extra")], partial=False)
    admin = str(tmp_path / "chorus" / "admin.toml")  # relative to the feature repo
    assert truncated == [(admin, bucket(fs, "extra"))]
    truncated.clear()
    fs.teardown()
    assert truncated == [(admin, bucket(fs, repo.VIEW))]


def test_skip_dedup_writes_without_reading(tmp_path: Path, cluster: DevCluster) -> None:
    """`skip_dedup`: one put_many per batch, no read, so no contexts: in a bucket that
    keeps siblings each write adds one (hence: only for `conflicts = "lww"` buckets), and
    reads still pick the newest event."""
    ours, _, _ = pair(tmp_path, cluster, repo.history(5), skip_dedup=True)
    store = online_store(ours)
    spy = Counting(store.client(ours.config))
    store._client = spy  # type: ignore[assignment]
    for h in (3, 1):
        ours.write_to_online_store(
            repo.VIEW, repo.rows(range(5), [repo.T0 + timedelta(hours=h)] * 5)
        )
    assert spy.calls == [("put_many", 5), ("put_many", 5)]
    with chorus.Client.connect(cluster.client_toml) as c:
        assert c.get(bucket(ours), raw_key(0)).siblings == 2
    newest = repo.rows(range(5), [repo.T0 + timedelta(hours=3)] * 5)
    assert repo.read(ours, range(5))["shifts"] == list(newest["shifts"])


@pytest.mark.parametrize(
    "extra,error",
    [
        ({"key_ttl_seconds": 0}, "greater than 0"),
        ({"max_batch_keys": 0}, "greater than 0"),
        ({"no_such_setting": 1}, "Extra inputs are not permitted"),
        ({"client_config": None}, "client_config"),
    ],
)
def test_config_is_checked_when_loaded(extra: Dict[str, Any], error: str) -> None:
    from feast import RepoConfig

    store = {"type": "chorus.feast.ChorusOnlineStore", "client_config": "c.toml", **extra}
    with pytest.raises(Exception, match=error):
        # Feast loads the store's config when it is first read.
        _ = RepoConfig(
            project="p", provider="local", registry="r.db", online_store=store
        ).online_store
    plain = {"type": "chorus.feast.ChorusOnlineStore", "client_config": "c.toml"}
    ok = RepoConfig(project="p", provider="local", registry="r.db", online_store=plain)
    assert ok.online_store.read_level == "quorum" and ok.online_store.bucket_prefix == "feast"
