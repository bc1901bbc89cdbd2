"""The Feast online store backed by Chorus: configuration, reads, writes and cleanup.

One bucket per feature view (``{bucket_prefix}.{project}.{view}``); the key is Feast's
serialized entity key and the value one :mod:`chorus.feast._record` record. Reads go
through one ``get_many`` per chunk of at most ``max_batch_keys`` entities. Writes read the
stored rows first (one ``get_many``), drop rows older than what is stored (newest event
wins, as in Feast), and write the rest with the contexts of that read, so a key's siblings
are replaced instead of piling up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

from feast import Entity
from feast.feature_view import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import PositiveInt, StrictBool, StrictInt, StrictStr

import chorus

from . import _record
from ._record import Record

logger = logging.getLogger(__name__)

#: The server's default ``limits.max_batch_keys``: keys in one ``get_many``/``put_many``.
MAX_BATCH_KEYS = 1000

Row = Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]
ReadRow = Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]
Level = Union[StrictStr, StrictInt]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Forms of put_many's ``ttl`` to try, in order: seconds, then a timedelta. A client that
# takes the other form raises TypeError before sending anything, so trying is safe.
_TTL_FORMS: Tuple[Callable[[int], Any], ...] = (lambda s: s, lambda s: timedelta(seconds=s))


class ChorusOnlineStoreConfig(FeastConfigBaseModel):
    """``online_store:`` settings of a ``feature_store.yaml`` for Chorus."""

    type: Literal["chorus.feast.ChorusOnlineStore"] = "chorus.feast.ChorusOnlineStore"
    """Online store type selector."""

    client_config: StrictStr
    """Path to the cluster's ``client.toml`` (relative paths start at the feature repo)."""

    admin_config: Optional[StrictStr] = None
    """Path to an admin ``client.toml``: needed to empty the buckets of removed feature
    views (``feast apply``) and on ``feast teardown``. Without it their data stays."""

    read_level: Level = "quorum"
    """Read consistency: ``one``, ``quorum``, ``all`` or a replica count."""

    write_level: Level = "quorum"
    """Write consistency, as ``read_level``."""

    key_ttl_seconds: Optional[PositiveInt] = None
    """Rows expire this many seconds after they are written: reads stop returning them,
    and where the server supports per-write TTL it drops them too."""

    bucket_prefix: StrictStr = "feast"
    """Buckets are named ``{bucket_prefix}.{project}.{feature view}``."""

    max_batch_keys: PositiveInt = MAX_BATCH_KEYS
    """Keys per ``get_many``/``put_many``: the cluster's ``limits.max_batch_keys``."""

    skip_dedup: StrictBool = False
    """Write without reading first: one request per batch instead of two, but a late row
    with an older event time replaces a newer one. Only for buckets configured with
    ``conflicts = "lww"``; in a sibling-keeping bucket every write would add a sibling."""


def _path(config: RepoConfig, p: str) -> str:
    if config.repo_path is not None and not Path(p).is_absolute():
        return str(Path(config.repo_path) / p)
    return p


def bucket_name(config: RepoConfig, table: FeatureView) -> str:
    """The Chorus bucket that holds ``table``'s rows."""
    name = table.name
    if getattr(config.registry, "enable_online_feature_view_versioning", False):
        version = getattr(table.projection, "version_tag", None)
        if version is None:
            version = getattr(table, "current_version_number", None)
        if version:
            name = f"{name}_v{version}"
    return f"{config.online_store.bucket_prefix}.{config.project}.{name}"


def _ns(ts: datetime) -> int:
    if ts.tzinfo is None:  # Feast: a naive timestamp is UTC
        ts = ts.replace(tzinfo=timezone.utc)
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def _datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _chunks(seq: Sequence[Any], n: int) -> List[Sequence[Any]]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def _failed(results: Sequence[Any]) -> None:
    """Raises the first per-key error of a batch, saying how many keys failed."""
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise chorus.ChorusError(
            f"{len(errors)} of {len(results)} keys failed; first: {errors[0]!r}"
        ) from errors[0]


class _Plan:
    """A write batch folded per key: the newest row of each key, in first-seen order."""

    def __init__(self, config: RepoConfig, data: Sequence[Row], expires_ns: Optional[int]):
        version = config.entity_key_serialization_version
        self.rows: Dict[bytes, Record] = {}
        for entity_key, values, event_ts, created_ts in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            rec = Record(
                event_ns=_ns(event_ts),
                created_ns=None if created_ts is None else _ns(created_ts),
                expires_ns=expires_ns,
                features=dict(values),
            )
            old = self.rows.get(key)
            # A later row of the same batch with the same times wins (as a plain upsert).
            if old is None or rec.order() >= old.order():
                self.rows[key] = _merge(old, rec)
        self.keys = list(self.rows)

    def items(self, stored: Optional[Sequence[Any]], now_ns: int) -> List[Tuple[Any, ...]]:
        """``put_many`` items: every row when nothing was read (``skip_dedup``), else the
        rows at least as new as what is stored, each with the context of that read."""
        if stored is None:
            return [(k, _record.encode(self.rows[k])) for k in self.keys]
        _failed(stored)
        items = []
        for key, got in zip(self.keys, stored):
            rec = self.rows[key]
            if got.found:
                current = _record.newest(got.values, now_ns)
                if current is not None and rec.order() < current.order():
                    continue  # older than the stored row: Feast keeps the newest event
                rec = _merge(current, rec)
            # The context also covers deletes (tombstones) the read saw.
            items.append((key, _record.encode(rec), got.context or None))
        return items


def _merge(old: Optional[Record], new: Record) -> Record:
    """``new``, keeping features of ``old`` that ``new`` lacks (a partial row updates only
    the features it has, as Feast's SQLite and Redis stores do)."""
    if old is None or not (old.features.keys() - new.features.keys()):
        return new
    return Record(new.event_ns, new.created_ns, new.expires_ns, {**old.features, **new.features})


def _decode_rows(
    results: Sequence[Any], requested: Optional[List[str]], now_ns: int
) -> List[ReadRow]:
    _failed(results)
    out: List[ReadRow] = []
    for got in results:
        rec = _record.newest(got.values, now_ns) if got.found else None
        if rec is None:
            out.append((None, None))
            continue
        feats = rec.features
        if requested is not None:
            feats = {n: feats[n] for n in requested if n in feats}
        out.append((_datetime(rec.event_ns), feats))
    return out


class ChorusOnlineStore(OnlineStore):
    """Feast online store on a Chorus cluster (see the module doc for the layout)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Optional[chorus.Client] = None
        self._aclient: Optional[chorus.AsyncClient] = None
        # Per client kind ("sync", "async"), the index into _TTL_FORMS of the ttl form
        # its put_many takes (past the end: none); absent until first asked.
        self._ttl_form: Dict[str, int] = {}
        #: Wall clock for expiry, in ns since the epoch; tests substitute their own.
        self.clock: Callable[[], int] = time.time_ns

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    def _cfg(self, config: RepoConfig) -> ChorusOnlineStoreConfig:
        cfg = config.online_store
        if not isinstance(cfg, ChorusOnlineStoreConfig):
            raise TypeError(f"online_store is {type(cfg).__name__}, not ChorusOnlineStoreConfig")
        return cfg

    def client(self, config: RepoConfig) -> chorus.Client:
        """The blocking client, connected on first use and shared by all threads."""
        with self._lock:
            if self._client is None:
                self._client = chorus.Client.connect(_path(config, self._cfg(config).client_config))
            return self._client

    async def async_client(self, config: RepoConfig) -> chorus.AsyncClient:
        """The asyncio client, connected on first use."""
        if self._aclient is None:
            c = await chorus.AsyncClient.connect(_path(config, self._cfg(config).client_config))
            if self._aclient is None:
                self._aclient = c
            else:  # another task connected meanwhile
                c.close()
        return self._aclient

    # Expiry --------------------------------------------------------------------------

    def _expires_ns(self, cfg: ChorusOnlineStoreConfig) -> Optional[int]:
        if not cfg.key_ttl_seconds:
            return None
        return self.clock() + cfg.key_ttl_seconds * 1_000_000_000

    def _ttl_kwargs(self, cfg: ChorusOnlineStoreConfig, kind: str) -> Dict[str, Any]:
        """``put_many``'s ``ttl`` argument for the ``"sync"`` or ``"async"`` client, when
        it has one: the server then drops expired rows itself. Reads check the expiry
        stored in each record either way."""
        if not cfg.key_ttl_seconds:
            return {}
        form = self._ttl_form.get(kind)
        if form is None:
            cls = chorus.AsyncClient if kind == "async" else chorus.Client
            has = _has_param(cls.put_many, "ttl")
            form = self._ttl_form[kind] = 0 if has else len(_TTL_FORMS)
            if not has:
                logger.info(
                    "this chorus client's put_many takes no ttl: expired rows are hidden "
                    "from reads but stay stored until overwritten"
                )
        if form >= len(_TTL_FORMS):
            return {}
        return {"ttl": _TTL_FORMS[form](cfg.key_ttl_seconds)}

    def _ttl_refused(self, cfg: ChorusOnlineStoreConfig, kind: str) -> bool:
        """After a TypeError from ``put_many``: moves to the next form of ``ttl``; False
        if none is left (or none was passed), so the error is not about it."""
        if not self._ttl_kwargs(cfg, kind):
            return False
        self._ttl_form[kind] += 1
        return self._ttl_form[kind] < len(_TTL_FORMS)

    def _put_many(self, client: chorus.Client, bucket: str, items: List[Any], cfg: Any) -> None:
        while True:
            try:
                kw = self._ttl_kwargs(cfg, "sync")
                got = client.put_many(bucket, items, w=cfg.write_level, **kw)
            except TypeError:
                if self._ttl_refused(cfg, "sync"):
                    continue
                raise
            return _failed(got)

    async def _put_many_async(
        self, client: chorus.AsyncClient, bucket: str, items: List[Any], cfg: Any
    ) -> None:
        while True:
            try:
                kw = self._ttl_kwargs(cfg, "async")
                got = await client.put_many(bucket, items, w=cfg.write_level, **kw)
            except TypeError:
                if self._ttl_refused(cfg, "async"):
                    continue
                raise
            return _failed(got)

    # Writes --------------------------------------------------------------------------

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[Row],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        cfg = self._cfg(config)
        client = self.client(config)
        bucket = bucket_name(config, table)
        for chunk in _chunks(data, cfg.max_batch_keys):
            plan = _Plan(config, chunk, self._expires_ns(cfg))
            stored = (
                None if cfg.skip_dedup else client.get_many(bucket, plan.keys, r=cfg.read_level)
            )
            items = plan.items(stored, self.clock())
            if items:
                self._put_many(client, bucket, items, cfg)
            if progress:
                progress(len(chunk))

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[Row],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        cfg = self._cfg(config)
        client = await self.async_client(config)
        bucket = bucket_name(config, table)
        for chunk in _chunks(data, cfg.max_batch_keys):
            plan = _Plan(config, chunk, self._expires_ns(cfg))
            stored = None
            if not cfg.skip_dedup:
                stored = await client.get_many(bucket, plan.keys, r=cfg.read_level)
            items = plan.items(stored, self.clock())
            if items:
                await self._put_many_async(client, bucket, items, cfg)
            if progress:
                progress(len(chunk))

    # Reads ---------------------------------------------------------------------------

    def _keys(self, config: RepoConfig, entity_keys: List[EntityKeyProto]) -> List[bytes]:
        v = config.entity_key_serialization_version
        return [serialize_entity_key(k, entity_key_serialization_version=v) for k in entity_keys]

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> List[ReadRow]:
        cfg = self._cfg(config)
        client = self.client(config)
        bucket = bucket_name(config, table)
        out: List[ReadRow] = []
        for chunk in _chunks(self._keys(config, entity_keys), cfg.max_batch_keys):
            got = client.get_many(bucket, chunk, r=cfg.read_level)
            out += _decode_rows(got, requested_features, self.clock())
        return out

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> List[ReadRow]:
        cfg = self._cfg(config)
        client = await self.async_client(config)
        bucket = bucket_name(config, table)
        chunks = _chunks(self._keys(config, entity_keys), cfg.max_batch_keys)
        results = await asyncio.gather(
            *(client.get_many(bucket, c, r=cfg.read_level) for c in chunks)
        )
        now = self.clock()
        return [row for got in results for row in _decode_rows(got, requested_features, now)]

    # Infrastructure ------------------------------------------------------------------

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        # Buckets need no creation; only removed views have something to do.
        self._truncate(config, tables_to_delete)

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        self._truncate(config, tables)
        self._close()

    def _truncate(self, config: RepoConfig, tables: Sequence[FeatureView]) -> None:
        if not tables:
            return
        cfg = self._cfg(config)
        buckets = [bucket_name(config, t) for t in tables]
        why = None
        if not hasattr(chorus.Client, "truncate"):
            why = "this chorus client has no truncate"
        elif cfg.admin_config is None:
            why = "online_store.admin_config is not set (truncate needs an admin certificate)"
        if why:
            logger.warning("the rows of %s stay in Chorus: %s", ", ".join(buckets), why)
            return
        with chorus.Client.connect(_path(config, cfg.admin_config)) as admin:
            for b in buckets:
                admin.truncate(b)

    def _close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._aclient is not None:
            self._aclient.close()
            self._aclient = None

    async def close(self) -> None:
        self._close()


def _has_param(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
