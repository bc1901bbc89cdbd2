"""Feast online reads: ``get_online_features`` on Chorus against Feast's Redis store.

Builds one feature repository (an entity, a view of 10 features), writes the same rows for
``--entities`` entities into both online stores, then times ``get_online_features`` for all
of them at once, alternating between the stores round by round so both see the same
machine load. Prints p50 and p99 per store. Starts its own ``redis-server`` (persistence
off) on a free port and stops it at the end; Chorus is the running cluster ``--config``
names.

    python3 python/bench/feast_bench.py --config cluster/client.toml [--rounds 200]

Needs ``pip install './python[feast]' redis`` and the ``redis-server`` binary.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float32, Float64, Int64, String

VIEW = "bench_view"


def schema() -> List[Field]:
    types = [Float32, Float64, Int64, String, Float32, Float64, Int64, String, Float64, Int64]
    return [Field(name=f"f{i}", dtype=t) for i, t in enumerate(types)]


def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ts = pd.Timestamp(datetime.now(timezone.utc).replace(microsecond=0))
    cols: Dict[str, object] = {"entity_id": np.arange(n, dtype="int64")}
    for f in schema():
        if f.dtype in (Float32, Float64):
            cols[f.name] = rng.random(n).astype("float32" if f.dtype == Float32 else "float64")
        elif f.dtype == Int64:
            cols[f.name] = rng.integers(0, 10**9, n).astype("int64")
        else:
            cols[f.name] = [f"value-{v}" for v in rng.integers(0, 10**6, n)]
    cols["event_timestamp"] = [ts] * n
    return pd.DataFrame(cols)


def feature_store(root: Path, online_store: Dict[str, object], parquet: Path) -> FeatureStore:
    root.mkdir(parents=True)
    config = RepoConfig(
        project="bench" + uuid.uuid4().hex[:8],
        provider="local",
        registry=str(root / "registry.db"),
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=root,
    )
    fs = FeatureStore(config=config)
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    source = FileSource(name="bench_source", path=str(parquet), timestamp_field="event_timestamp")
    view = FeatureView(
        name=VIEW, entities=[entity], ttl=timedelta(days=1), schema=schema(), source=source
    )
    fs.apply([entity, source, view])
    return fs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(binary: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from e
            time.sleep(0.05)


class TimedGetMany:
    """Wraps the Chorus store's client to time its ``get_many`` calls (the rest of a
    ``get_online_features`` is Feast's and the store's Python work)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.ms = 0.0

    def get_many(self, *args: object, **kw: object) -> object:
        t = time.perf_counter()
        try:
            return self.inner.get_many(*args, **kw)  # type: ignore[attr-defined]
        finally:
            self.ms += (time.perf_counter() - t) * 1000


def pct(xs: List[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="client.toml of a running Chorus cluster")
    p.add_argument("--entities", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--read-level", default="quorum")
    p.add_argument("--redis-server", default="redis-server")
    args = p.parse_args()

    binary = shutil.which(args.redis_server)
    if binary is None:
        raise SystemExit(f"{args.redis_server} not found (apt-get install redis-server)")
    port = free_port()
    # A SIGTERM unwinds through `finally`, so redis-server is stopped with us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    redis = start_redis(binary, port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            df = frame(args.entities)
            parquet = root / "rows.parquet"
            df.to_parquet(parquet)
            chorus_cfg = {
                "type": "chorus.feast.ChorusOnlineStore",
                "client_config": str(Path(args.config).resolve()),
                "read_level": args.read_level,
            }
            redis_cfg = {"type": "redis", "connection_string": f"127.0.0.1:{port}"}
            stores = {
                "chorus": feature_store(root / "chorus", chorus_cfg, parquet),
                "redis": feature_store(root / "redis", redis_cfg, parquet),
            }
            features = [f"{VIEW}:{f.name}" for f in schema()]
            rows = [{"entity_id": int(i)} for i in df["entity_id"]]
            for fs in stores.values():
                fs.write_to_online_store(VIEW, df)
                first = fs.get_online_features(features=features, entity_rows=rows[:3]).to_dict()
                assert first["f2"] == df["f2"][:3].tolist(), "online rows differ from the source"
            ours = stores["chorus"]._get_provider().online_store
            timed = TimedGetMany(ours.client(stores["chorus"].config))
            ours._client = timed
            inner_read = ours.online_read
            read_ms = [0.0]

            def timed_read(*a: object, **kw: object) -> object:
                t = time.perf_counter()
                try:
                    return inner_read(*a, **kw)
                finally:
                    read_ms[0] += (time.perf_counter() - t) * 1000

            ours.online_read = timed_read
            times: Dict[str, List[float]] = {name: [] for name in stores}
            times["chorus: of which the store's online_read"] = []
            times["chorus: of which get_many"] = []
            for r in range(args.warmup + args.rounds):
                for name, fs in stores.items():
                    timed.ms = read_ms[0] = 0.0
                    t = time.perf_counter()
                    out = fs.get_online_features(features=features, entity_rows=rows)
                    elapsed = time.perf_counter() - t
                    if r >= args.warmup:
                        times[name].append(elapsed * 1000)
                        if name == "chorus":
                            times["chorus: of which the store's online_read"].append(read_ms[0])
                            times["chorus: of which get_many"].append(timed.ms)
                    assert len(out.to_dict(include_event_timestamps=False)["f0"]) == len(rows)
    finally:
        redis.terminate()
        redis.wait(timeout=10)

    print(
        f"get_online_features, {args.entities} entities x {len(schema())} features, "
        f"{args.rounds} rounds (after {args.warmup} warm-up), Chorus r={args.read_level}"
    )
    print("| online store | p50 (ms) | p99 (ms) | mean (ms) |")
    print("|---|---|---|---|")
    for name, xs in times.items():
        print(f"| {name} | {pct(xs, 0.5):.1f} | {pct(xs, 0.99):.1f} | {statistics.mean(xs):.1f} |")


if __name__ == "__main__":
    main()
