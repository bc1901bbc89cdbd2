"""``chorus.AsyncClient``: the asyncio client.

A thin layer over the native ``chorus._chorus.AsyncClient`` so that every method is a real
coroutine function: calls can be made before an event loop runs (``run_until_complete``,
``create_task``) and nothing starts until the coroutine is awaited.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Type, Union

from . import _chorus

if TYPE_CHECKING:
    from ._chorus import Blob, GetResult, Item, KeyPage, Level, Ttl
    from .errors import ChorusError


class AsyncClient:
    """An asyncio client for a Chorus cluster.

    Connect with ``await AsyncClient.connect(path)``. The methods mirror
    :class:`chorus.Client` as coroutines; requests run on the client's own threads, so many
    can be in flight from one event loop (``asyncio.gather``). Cancelling a call drops its
    request; a write may still have been applied.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _chorus.AsyncClient) -> None:
        """Wraps a connected native client; use :meth:`connect` instead."""
        self._native = native

    @classmethod
    async def connect(cls, config_path: Union[str, "os.PathLike[str]"]) -> "AsyncClient":
        """Connects to the cluster described by a ``client.toml`` and learns its ring.

        Raises ``NotFound`` if the file doesn't exist, ``InvalidArgument`` if it or the TLS
        material it names can't be used, and ``Unavailable`` if no node answers.
        """
        return cls(await _chorus.AsyncClient.connect(config_path))

    async def get(self, bucket: Blob, key: Blob, r: Level = "quorum") -> GetResult:
        """Reads a key with read consistency ``r``."""
        return await self._native.get(bucket, key, r)

    async def put(
        self,
        bucket: Blob,
        key: Blob,
        value: Blob,
        context: Optional[bytes] = None,
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> bytes:
        """Writes a value with write consistency ``w``; returns the new causal context.

        With the ``context`` of an earlier read the write replaces what that read saw;
        without one it is added next to any existing values as a sibling. With ``ttl``
        (seconds or a ``datetime.timedelta``) the value reads as deleted after that long;
        ``None`` takes the bucket's default TTL, if any. Zero, negative or over ten years
        is ``InvalidArgument``.
        """
        return await self._native.put(bucket, key, value, context, w, ttl)

    async def delete(
        self, bucket: Blob, key: Blob, context: Optional[bytes], w: Level = "quorum"
    ) -> bytes:
        """Deletes the values that ``context`` (from a read) saw; returns the causal
        context of the delete."""
        return await self._native.delete(bucket, key, context, w)

    async def get_many(
        self, bucket: Blob, keys: Sequence[Blob], r: Level = "quorum"
    ) -> List[Union[GetResult, ChorusError]]:
        """Reads several keys in one request, each with read consistency ``r``; returns, in
        the order of ``keys``, a :class:`GetResult` per key or the exception (not raised)
        for a key that failed. See :meth:`chorus.Client.get_many`."""
        return await self._native.get_many(bucket, keys, r)

    async def put_many(
        self,
        bucket: Blob,
        items: Iterable[Item],
        w: Level = "quorum",
        ttl: Optional[Ttl] = None,
    ) -> List[Union[bytes, ChorusError]]:
        """Writes several keys in one request, each with write consistency ``w``; returns,
        in the order of ``items``, the new context per key or the exception (not raised)
        for a key that failed; ``ttl`` applies to every put. See
        :meth:`chorus.Client.put_many`."""
        return await self._native.put_many(bucket, items, w, ttl)

    async def status(self) -> Dict[str, Any]:
        """The cluster as the first reachable node sees it, shaped like
        ``chorus status --json``."""
        return await self._native.status()

    async def ring(self, key: Optional[Blob] = None, bucket: Blob = "default") -> Dict[str, Any]:
        """The ring, fetched afresh, shaped like ``chorus ring --json``; with a ``key``,
        where that key of ``bucket`` lives."""
        return await self._native.ring(key, bucket)

    async def leave(self, node: str, force: bool = False) -> None:
        """Asks the cluster to move ``node``'s partitions to the other nodes (admin only)."""
        await self._native.leave(node, force)

    async def remove(self, node: str, force: bool = False) -> None:
        """Takes a dead ``node`` out of the ring (admin only)."""
        await self._native.remove(node, force)

    async def keys(
        self,
        bucket: Blob,
        prefix: Optional[Blob] = None,
        limit: int = 1000,
        after: Optional[str] = None,
    ) -> KeyPage:
        """A page of the keys of ``bucket`` that start with ``prefix``, in byte order, after
        the page whose ``next`` token is ``after`` (see :meth:`chorus.Client.keys`)."""
        return await self._native.keys(bucket, prefix, limit, after)

    async def truncate(self, bucket: Blob) -> int:
        """Deletes every key of ``bucket`` (admin only); returns how many were deleted.
        Raises ``Unavailable`` naming a replica that is down; calling again is safe."""
        return await self._native.truncate(bucket)

    async def repair(self) -> None:
        """Starts an anti-entropy round on the first reachable node (admin only)."""
        await self._native.repair()

    def close(self) -> None:
        """Lets go of the connections; later calls raise ``ChorusError``."""
        self._native.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        self.close()
        return False
