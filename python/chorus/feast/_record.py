"""The stored form of one entity's row of a feature view, and which row wins.

A Chorus value holds one :class:`Record`: the row's event timestamp, its created timestamp
(if any), when it expires (if a key TTL is configured), and each feature's serialized
``ValueProto``. The encoding is versioned so a later layout can read older values.

Siblings (concurrent writes to one key) are resolved the way Feast orders rows: newest
event timestamp, then newest created timestamp; the encoded bytes break an exact tie so
every reader picks the same sibling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Tuple

__all__ = ["Record", "RecordError", "encode", "decode", "newest"]

_MAGIC = b"CF"
_VERSION = 1
_HAS_CREATED = 0x01
_HAS_EXPIRY = 0x02
# magic, version, flags, event ns, created ns, expiry ns, feature count
_HEADER = struct.Struct(">2sBBqqqI")
_NAME_LEN = struct.Struct(">H")
_VALUE_LEN = struct.Struct(">I")


class RecordError(ValueError):
    """A stored value is not a record this version can read."""


@dataclass
class Record:
    """One entity's row: timestamps in nanoseconds since the Unix epoch (UTC)."""

    event_ns: int
    created_ns: Optional[int] = None
    expires_ns: Optional[int] = None
    features: Dict[str, bytes] = field(default_factory=dict)

    def order(self) -> Tuple[int, int]:
        """The key Feast orders rows by: event time, then created time."""
        return (self.event_ns, -1 if self.created_ns is None else self.created_ns)

    def expired(self, now_ns: int) -> bool:
        return self.expires_ns is not None and self.expires_ns <= now_ns


def encode(record: Record) -> bytes:
    flags = (_HAS_CREATED if record.created_ns is not None else 0) | (
        _HAS_EXPIRY if record.expires_ns is not None else 0
    )
    parts = [
        _HEADER.pack(
            _MAGIC,
            _VERSION,
            flags,
            record.event_ns,
            record.created_ns or 0,
            record.expires_ns or 0,
            len(record.features),
        )
    ]
    for name, value in record.features.items():
        raw = name.encode()
        parts += [_NAME_LEN.pack(len(raw)), raw, _VALUE_LEN.pack(len(value)), value]
    return b"".join(parts)


def decode(data: bytes) -> Record:
    """Parses a stored value; raises :class:`RecordError` if it isn't a record."""
    try:
        magic, version, flags, event, created, expires, count = _HEADER.unpack_from(data)
    except struct.error as e:
        raise RecordError(f"value of {len(data)} bytes is not a feature record") from e
    if magic != _MAGIC or version != _VERSION:
        raise RecordError(f"not a feature record of version {_VERSION} (magic {magic!r})")
    features: Dict[str, bytes] = {}
    pos = _HEADER.size
    end = len(data)
    try:
        for _ in range(count):
            (n,) = _NAME_LEN.unpack_from(data, pos)
            pos += 2
            name = data[pos : pos + n].decode()
            pos += n
            (v,) = _VALUE_LEN.unpack_from(data, pos)
            pos += 4
            if pos + v > end:
                raise RecordError("feature record is cut short")
            features[name] = data[pos : pos + v]
            pos += v
    except (struct.error, UnicodeDecodeError) as e:
        raise RecordError("feature record is cut short or garbled") from e
    if pos != end:
        raise RecordError(f"{end - pos} stray bytes after a feature record")
    return Record(
        event_ns=event,
        created_ns=created if flags & _HAS_CREATED else None,
        expires_ns=expires if flags & _HAS_EXPIRY else None,
        features=features,
    )


def newest(values: Iterable[bytes], now_ns: int) -> Optional[Record]:
    """The winning record among a key's siblings, ignoring expired ones; None if none is
    left. Values that aren't records (written by something else) are skipped."""
    best: Optional[Tuple[Tuple[int, int], bytes, Record]] = None
    for raw in values:
        try:
            rec = decode(raw)
        except RecordError:
            continue
        if rec.expired(now_ns):
            continue
        cand = (rec.order(), raw, rec)
        if best is None or cand[:2] > best[:2]:
            best = cand
    return None if best is None else best[2]
