"""Python client for Chorus, a leaderless, Dynamo-style key-value store.

>>> import chorus
>>> client = chorus.Client.connect("cluster/client.toml")
>>> client.put("users", "ada", b"engineer", w="all")
>>> read = client.get("users", "ada")
>>> read.values
[b'engineer']
>>> client.put("users", "ada", b"mathematician", context=read.context)

Reads return every concurrent value (siblings) with an opaque causal context; pass that
context back with the next write to replace what was read. ``AsyncClient`` offers the same
calls for asyncio. Errors are subclasses of :class:`ChorusError`.
"""

from ._async_client import AsyncClient
from ._chorus import Client, GetResult, KeyPage, __version__
from .errors import (
    ChorusError,
    ChorusTimeout,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    QuorumError,
    TooLarge,
    Unavailable,
)

__all__ = [
    "AsyncClient",
    "Client",
    "GetResult",
    "KeyPage",
    "ChorusError",
    "ChorusTimeout",
    "InvalidArgument",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "QuorumError",
    "TooLarge",
    "Unavailable",
    "__version__",
]
