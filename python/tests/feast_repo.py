"""A Feast feature repository for the tests: a parquet source of driver rows, one entity
and feature views over it, applied to any online store (Chorus, or SQLite as the oracle)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
from feast import (
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RepoConfig,
    ValueType,
)
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

#: Whole seconds: Feast's SQLite store keeps timestamps to the second, and it is the oracle.
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
VIEW = "driver_stats"
PUSH = "driver_push"
SCHEMA = [
    Field(name="conv_rate", dtype=Float32),
    Field(name="acc_rate", dtype=Float64),
    Field(name="trips", dtype=Int64),
    Field(name="rating", dtype=Int32),
    Field(name="city", dtype=String),
    Field(name="active", dtype=Bool),
    Field(name="lifetime_km", dtype=Float64),
    Field(name="shifts", dtype=Int64),
    Field(name="note", dtype=String),
    Field(name="recent_trips", dtype=Array(Int64)),
]
FEATURES = [f"{VIEW}:{f.name}" for f in SCHEMA]


def rows(ids: Sequence[int], ts: Sequence[datetime], salt: int = 0) -> pd.DataFrame:
    """One row per (id, timestamp) pair; values depend on both, so a row's source shows."""
    out: Dict[str, List[Any]] = {f.name: [] for f in SCHEMA}
    for i, t in zip(ids, ts):
        s = int(t.timestamp()) % 1000 + salt
        out["conv_rate"].append(((i * 7 + s) % 100) / 100)
        out["acc_rate"].append(((i * 13 + s) % 1000) / 1000)
        out["trips"].append(i * 1000 + s)
        out["rating"].append((i + s) % 5)
        out["city"].append(f"city-{(i + s) % 17}")
        out["active"].append((i + s) % 3 == 0)
        out["lifetime_km"].append(i * 1.5 + s)
        out["shifts"].append(s)
        # Some rows lack a value: both stores must agree on nulls too.
        out["note"].append(None if (i + s) % 4 == 0 else f"n{i}-{s}")
        out["recent_trips"].append([i, s, i + s])
    df = pd.DataFrame(out)
    df["conv_rate"] = df["conv_rate"].astype("float32")
    df["rating"] = df["rating"].astype("int32")
    df.insert(0, "driver_id", pd.Series(list(ids), dtype="int64"))
    df["event_timestamp"] = pd.to_datetime(list(ts), utc=True)
    df["created"] = df["event_timestamp"]
    return df


def history(n: int) -> pd.DataFrame:
    """Three rows per driver, at T0 + id%50 s, +1 h and +2 h: materializing picks the last."""
    ids, ts = [], []
    for i in range(n):
        for h in range(3):
            ids.append(i)
            ts.append(T0 + timedelta(hours=h, seconds=i % 50))
    return rows(ids, ts)


def definitions(parquet: Path, views: Sequence[str] = (VIEW,)) -> List[Any]:
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="driver_file",
        path=str(parquet),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    push = PushSource(name=PUSH, batch_source=source)
    objs: List[Any] = [driver, source, push]
    for name in views:
        objs.append(
            FeatureView(
                name=name,
                entities=[driver],
                ttl=timedelta(days=3650),
                schema=SCHEMA,
                source=push if name == VIEW else source,
                online=True,
            )
        )
    return objs


def store(
    root: Path,
    project: str,
    online_store: Dict[str, Any],
    parquet: Path,
    views: Sequence[str] = (VIEW,),
) -> FeatureStore:
    """A feature store under `root` with its own registry, applied."""
    root.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(root / "registry.db"),
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=root,
    )
    fs = FeatureStore(config=config)
    fs.apply(definitions(parquet, views))
    return fs


def read(
    fs: FeatureStore, ids: Sequence[int], features: Optional[List[str]] = None
) -> Dict[str, List[Any]]:
    """`get_online_features` for `ids`, as a dict with event timestamps."""
    resp = fs.get_online_features(
        features=features or FEATURES, entity_rows=[{"driver_id": i} for i in ids]
    )
    return resp.to_dict(include_event_timestamps=True)
