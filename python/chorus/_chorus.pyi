"""Type stubs for the native module ``chorus._chorus`` (re-exported by ``chorus``)."""

import datetime
import os
from types import TracebackType
from typing import Any, Awaitable, Dict, Iterable, Iterator, List, Literal, Optional, Sequence, Type, Union

from .errors import ChorusError

__version__: str

#: A bucket, key or value: bytes, or str (encoded as UTF-8).
Blob = Union[bytes, bytearray, str]
#: A time to live: seconds, or a timedelta. More than zero, at most ten years.
Ttl = Union[int, float, datetime.timedelta]
#: A consistency level: "one", "quorum", "all", or a replica count from 1 to N.
Level = Union[Literal["one", "quorum", "all"], int]
#: One write of ``put_many``: ``{"key", "value", "context"}`` (a None value deletes), or a
#: ``(key, value)`` / ``(key, value, context)`` tuple.
Item = Union[Dict[str, Any], tuple]
#: A dict shaped like the JSON the ``chorus`` CLI prints.
Report = Dict[str, Any]

class GetResult:
    """The result of a read."""

    @property
    def found(self) -> bool:
        """Whether the key has any live value."""
    @property
    def values(self) -> List[bytes]:
        """The values, one per sibling."""
    @property
    def context(self) -> bytes:
        """The causal context of this read: pass it to the next put or delete."""
    @property
    def tombstones(self) -> int:
        """Deletes (tombstones) still held for the key."""
    @property
    def truncated(self) -> bool:
        """Some values were left out (too large together); ``context`` covers them."""
    @property
    def siblings(self) -> int:
        """The number of values."""

class KeyPage:
    """One page of a bucket's keys, in byte order; unpacks as ``keys, next = page``."""

    @property
    def keys(self) -> List[bytes]:
        """The keys of this page."""
    @property
    def next(self) -> Optional[str]:
        """The token of the following page (pass it as ``after``), None when done."""
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...

class Client:
    """A blocking client for a Chorus cluster; safe to share between threads."""

    @staticmethod
    def connect(config_path: Union[str, os.PathLike[str]]) -> "Client":
        """Connects to the cluster described by a ``client.toml`` and learns its ring."""
    def get(self, bucket: Blob, key: Blob, r: Level = "quorum") -> GetResult:
        """Reads a key with read consistency ``r``."""
    def put(
        self,
        bucket: Blob,
        key: Blob,
        value: Blob,
        context: Optional[bytes] = None,
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> bytes:
        """Writes a value; returns the new causal context. With ``ttl`` the value reads as
        deleted after that long; None takes the bucket's default TTL, if any."""
    def delete(self, bucket: Blob, key: Blob, context: Optional[bytes], w: Level = "quorum") -> bytes:
        """Deletes what ``context`` saw; returns the causal context of the delete."""
    def get_many(
        self, bucket: Blob, keys: Sequence[Blob], r: Level = "quorum"
    ) -> List[Union[GetResult, ChorusError]]:
        """Reads several keys in one request, each with read consistency ``r``: in the
        order of ``keys``, a GetResult per key, or the exception (not raised) for a key
        that failed. Raises only if the whole batch fails (e.g. over the key limit)."""
    def put_many(
        self,
        bucket: Blob,
        items: Iterable[Item],
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> List[Union[bytes, ChorusError]]:
        """Writes several keys in one request, each with write consistency ``w``: in the
        order of ``items``, the new context per key, or the exception (not raised) for a
        key that failed. Raises only if the whole batch fails (e.g. over the key limit).
        ``ttl`` applies to every put of the batch."""
    def status(self) -> Report:
        """The cluster as one node sees it, shaped like ``chorus status --json``."""
    def ring(self, key: Optional[Blob] = None, bucket: Blob = "default") -> Report:
        """The ring (or where ``key`` lives), shaped like ``chorus ring --json``."""
    def leave(self, node: str, force: bool = False) -> None:
        """Moves ``node``'s partitions to the other nodes (admin only)."""
    def remove(self, node: str, force: bool = False) -> None:
        """Takes a dead ``node`` out of the ring (admin only)."""
    def keys(
        self,
        bucket: Blob,
        prefix: Optional[Blob] = None,
        limit: int = 1000,
        after: Optional[str] = None,
    ) -> KeyPage:
        """A page of the keys of ``bucket`` that start with ``prefix``, in byte order,
        after the page whose ``next`` token is ``after``; ``limit`` at most 10,000. Asks one
        replica of every partition: for bulk jobs, not the request path."""
    def truncate(self, bucket: Blob) -> int:
        """Deletes every key of ``bucket`` (admin only); returns how many. Raises
        Unavailable naming a replica that is down; calling again is safe."""
    def repair(self) -> None:
        """Starts an anti-entropy round (admin only)."""
    def close(self) -> None:
        """Lets go of the connections; later calls raise ChorusError."""
    def _rust_get_latencies(
        self, bucket: Blob, keys: Sequence[Blob], r: Level = "quorum"
    ) -> List[int]:
        """Diagnostic for the overhead benchmark: nanoseconds per read from a Rust loop."""
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class AsyncClient:
    """The native asyncio client; ``chorus.AsyncClient`` wraps it in coroutines."""

    @staticmethod
    def connect(config_path: Union[str, os.PathLike[str]]) -> Awaitable["AsyncClient"]: ...
    def get(self, bucket: Blob, key: Blob, r: Level = "quorum") -> Awaitable[GetResult]: ...
    def put(
        self,
        bucket: Blob,
        key: Blob,
        value: Blob,
        context: Optional[bytes] = None,
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> Awaitable[bytes]: ...
    def delete(
        self, bucket: Blob, key: Blob, context: Optional[bytes], w: Level = "quorum"
    ) -> Awaitable[bytes]: ...
    def get_many(
        self, bucket: Blob, keys: Sequence[Blob], r: Level = "quorum"
    ) -> Awaitable[List[Union[GetResult, ChorusError]]]: ...
    def put_many(
        self,
        bucket: Blob,
        items: Iterable[Item],
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> Awaitable[List[Union[bytes, ChorusError]]]: ...
    def status(self) -> Awaitable[Report]: ...
    def ring(self, key: Optional[Blob] = None, bucket: Blob = "default") -> Awaitable[Report]: ...
    def leave(self, node: str, force: bool = False) -> Awaitable[None]: ...
    def remove(self, node: str, force: bool = False) -> Awaitable[None]: ...
    def keys(
        self,
        bucket: Blob,
        prefix: Optional[Blob] = None,
        limit: int = 1000,
        after: Optional[str] = None,
    ) -> Awaitable[KeyPage]: ...
    def truncate(self, bucket: Blob) -> Awaitable[int]: ...
    def repair(self) -> Awaitable[None]: ...
    def close(self) -> None: ...
