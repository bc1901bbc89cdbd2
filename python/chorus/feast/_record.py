"""The stored form of one entity's row of a feature view, and which row wins.

A Chorus value holds one :class:`Record`: a fixed header with the row's event timestamp,
its created timestamp (if any) and when it expires (if a key TTL is configured), then the
features as one Feast ``Map`` message (feature name to ``ValueProto``), which protobuf
parses in one call. The header is versioned so a later layout can still read older values.

Siblings (concurrent writes to one key) are resolved the way Feast orders rows: newest
event timestamp, then newest created timestamp; the stored bytes break an exact tie so
every reader picks the same sibling. Only the winner's features are parsed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Tuple

from feast.protos.feast.types.Value_pb2 import Map
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.message import DecodeError

__all__ = ["Record", "RecordError", "encode", "decode", "newest"]

_MAGIC = b"CF"
_VERSION = 1
_HAS_CREATED = 0x01
_HAS_EXPIRY = 0x02
# magic, version, flags, event ns, created ns, expiry ns
_HEADER = struct.Struct(">2sBBqqq")


class RecordError(ValueError):
    """A stored value is not a record this version can read."""


@dataclass
class Record:
    """One entity's row: timestamps in nanoseconds since the Unix epoch (UTC)."""

    event_ns: int
    created_ns: Optional[int] = None
    expires_ns: Optional[int] = None
    features: Dict[str, ValueProto] = field(default_factory=dict)

    def order(self) -> Tuple[int, int]:
        """The key Feast orders rows by: event time, then created time."""
        return _order(self.event_ns, self.created_ns)

    def expired(self, now_ns: int) -> bool:
        return self.expires_ns is not None and self.expires_ns <= now_ns


def _order(event_ns: int, created_ns: Optional[int]) -> Tuple[int, int]:
    return (event_ns, -1 if created_ns is None else created_ns)


def encode(record: Record) -> bytes:
    flags = (_HAS_CREATED if record.created_ns is not None else 0) | (
        _HAS_EXPIRY if record.expires_ns is not None else 0
    )
    body = Map()
    for name, value in record.features.items():
        body.val[name].CopyFrom(value)
    header = _HEADER.pack(
        _MAGIC,
        _VERSION,
        flags,
        record.event_ns,
        record.created_ns or 0,
        record.expires_ns or 0,
    )
    return header + body.SerializeToString(deterministic=True)


def _header(data: bytes) -> Record:
    """The record's timestamps, features not parsed."""
    try:
        magic, version, flags, event, created, expires = _HEADER.unpack_from(data)
    except struct.error as e:
        raise RecordError(f"value of {len(data)} bytes is not a feature record") from e
    if magic != _MAGIC or version != _VERSION:
        raise RecordError(f"not a feature record of version {_VERSION} (magic {magic!r})")
    return Record(
        event_ns=event,
        created_ns=created if flags & _HAS_CREATED else None,
        expires_ns=expires if flags & _HAS_EXPIRY else None,
    )


def _parse_features(rec: Record, data: bytes) -> Record:
    body = Map()
    try:
        body.ParseFromString(data[_HEADER.size :])
    except DecodeError as e:
        raise RecordError("feature record's features are garbled") from e
    rec.features = dict(body.val.items())
    return rec


def decode(data: bytes) -> Record:
    """Parses a stored value; raises :class:`RecordError` if it isn't a record."""
    return _parse_features(_header(data), data)


def newest(values: Iterable[bytes], now_ns: int) -> Optional[Record]:
    """The winning record among a key's siblings, ignoring expired ones; None if none is
    left. Values that aren't records (written by something else) are skipped."""
    values = list(values)
    best: Optional[Tuple[Tuple[int, int], bytes, Record]] = None
    for raw in values:
        try:
            rec = _header(raw)
        except RecordError:
            continue
        if rec.expired(now_ns):
            continue
        cand = (rec.order(), raw, rec)
        if best is None or cand[:2] > best[:2]:
            best = cand
    if best is None:
        return None
    try:
        return _parse_features(best[2], best[1])
    except RecordError:
        # The newest header has a garbled body: fall back to the others.
        return newest([v for v in values if v != best[1]], now_ns)
