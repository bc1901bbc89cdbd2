"""The exceptions the Chorus client raises.

Every one derives from :class:`ChorusError`, so ``except chorus.ChorusError`` catches all
of them. Some also derive from the built-in exception a Python programmer would reach for
first (``ValueError`` for bad arguments, ``TimeoutError`` for deadlines).
"""

from __future__ import annotations

__all__ = [
    "ChorusError",
    "InvalidArgument",
    "TooLarge",
    "NotFound",
    "PermissionDenied",
    "QuorumError",
    "Overloaded",
    "Unavailable",
    "ChorusTimeout",
]


class ChorusError(Exception):
    """Base class of every error raised by the Chorus client.

    Raised as itself for failures with no more specific class: an internal error on the
    node, a protocol error, or an unexpected response.
    """


class InvalidArgument(ChorusError, ValueError):
    """An argument or the client configuration can't be used.

    For example an unknown consistency level, a level above the bucket's N, a malformed
    causal context, an empty key, unreadable TLS material, or an option the server does
    not support yet.
    """


class TooLarge(InvalidArgument):
    """The key, bucket name or value is over the node's limits."""


class NotFound(ChorusError):
    """Something named by the caller does not exist, such as the client config file.

    A key without a value is not an error: :meth:`Client.get` returns a result whose
    ``found`` is ``False``.
    """


class PermissionDenied(ChorusError):
    """The client's certificate lacks the role the request needs (e.g. admin)."""


class QuorumError(ChorusError):
    """Fewer replicas than the requested level answered before the deadline.

    A write that fails this way may still have been applied by the replicas that did
    answer; a later read can show it.

    Attributes:
        needed: How many replicas the level asked for.
        answered: How many answered in time.
    """

    needed: int
    answered: int

    def __init__(self, message: str, needed: int = 0, answered: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.answered = answered


class Overloaded(ChorusError):
    """The node refused the request to protect itself; retry later, with backoff."""


class Unavailable(ChorusError):
    """No node could be reached, or the reached node can't serve yet."""


class ChorusTimeout(ChorusError, TimeoutError):
    """The request passed the client's deadline (``timeout`` in the client config).

    It may or may not have been applied.
    """
