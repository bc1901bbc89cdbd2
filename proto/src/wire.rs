//! Framing shared by clients and nodes: a `u32` big-endian length, then a msgpack body.
//!
//! The body is an [`Envelope`] that carries the protocol version next to the message, so a
//! peer speaking a version we don't know is refused with a clear error instead of a
//! misparse.
//!
//! Two framings carry envelopes. A *stream frame* is one request or one response on its own
//! QUIC bidirectional stream: `[u32 length][envelope]`. A *link* is a long-lived stream that
//! opens with [`LINK_MAGIC`] where a length would be and then carries many *link frames*,
//! `[u32 length][u64 request id][envelope]` (the length counts the id), answered in any
//! order under the same id. Reading and writing them on streams is in `chorus_client`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default cap on one frame. A value may be 8 MiB by default, and a read can return several
/// siblings, so responses get more room than the value limit.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Sent where a stream frame's length would be, this opens a link. No frame is this long.
pub const LINK_MAGIC: u32 = u32::MAX;

/// Bytes in front of a link frame's envelope: its length and its request id.
pub const LINK_HEADER: usize = 12;

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u16,
    /// Trace id, carried across nodes so one request's spans can be joined.
    #[serde(default)]
    trace: u64,
    body: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("peer speaks protocol version {0}, this build speaks {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("malformed frame: {0}")]
    Decode(String),
    #[error("could not encode frame: {0}")]
    Encode(String),
    #[error("stream closed before a complete frame arrived")]
    Truncated,
    #[error("i/o error on stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one message as a complete frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T, trace: u64) -> Result<Vec<u8>, WireError> {
    let env = Envelope {
        v: PROTOCOL_VERSION,
        trace,
        body: msg,
    };
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write_named(&mut buf, &env).map_err(|e| WireError::Encode(e.to_string()))?;
    let len = buf.len() - 4;
    let len32 = u32::try_from(len).map_err(|_| WireError::TooLarge {
        size: len,
        limit: u32::MAX as usize,
    })?;
    buf[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(buf)
}

/// An encoded envelope with room in front for either framing, so one encoding serves a
/// stream frame or a link frame without copying.
#[derive(Debug)]
pub struct Encoded {
    buf: Vec<u8>,
}

impl Encoded {
    pub fn new<T: Serialize>(msg: &T, trace: u64) -> Result<Encoded, WireError> {
        let env = Envelope {
            v: PROTOCOL_VERSION,
            trace,
            body: msg,
        };
        let mut buf = vec![0u8; LINK_HEADER];
        rmp_serde::encode::write_named(&mut buf, &env)
            .map_err(|e| WireError::Encode(e.to_string()))?;
        let len = buf.len() - LINK_HEADER;
        if u32::try_from(len + 8).is_err() {
            return Err(WireError::TooLarge {
                size: len,
                limit: u32::MAX as usize - 8,
            });
        }
        Ok(Encoded { buf })
    }

    /// The envelope's size: what the frame limits apply to.
    pub fn body_len(&self) -> usize {
        self.buf.len() - LINK_HEADER
    }

    /// The envelope alone.
    pub fn body(&self) -> &[u8] {
        &self.buf[LINK_HEADER..]
    }

    /// As a stream frame: the whole buffer, and where the frame starts in it.
    pub fn into_stream_frame(mut self) -> (Vec<u8>, usize) {
        let len = self.body_len() as u32;
        self.buf[8..LINK_HEADER].copy_from_slice(&len.to_be_bytes());
        (self.buf, 8)
    }

    /// As a link frame answering (or asking) under `id`.
    pub fn into_link_frame(mut self, id: u64) -> Vec<u8> {
        let len = (self.body_len() + 8) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf[4..LINK_HEADER].copy_from_slice(&id.to_be_bytes());
        self.buf
    }
}

/// Decodes a frame body (without the length prefix). Returns the message and trace id.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<(T, u64), WireError> {
    match rmp_serde::from_slice::<Envelope<T>>(body) {
        Ok(env) if env.v == PROTOCOL_VERSION => Ok((env.body, env.trace)),
        Ok(env) => Err(WireError::Version(env.v)),
        Err(e) => {
            // Tell a version mismatch apart from garbage: the body may be a newer shape.
            if let Ok(v) = rmp_serde::from_slice::<VersionOnly>(body) {
                if v.v != PROTOCOL_VERSION {
                    return Err(WireError::Version(v.v));
                }
            }
            Err(WireError::Decode(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Level, Request};

    #[test]
    fn round_trip() {
        let req = Request::Get {
            bucket: b"b".to_vec(),
            key: b"k".to_vec(),
            r: Level::All,
        };
        let frame = encode(&req, 7).expect("encode");
        let len = u32::from_be_bytes(frame[..4].try_into().expect("prefix")) as usize;
        assert_eq!(len, frame.len() - 4);
        let (back, trace): (Request, u64) = decode(&frame[4..]).expect("decode");
        assert_eq!(back, req);
        assert_eq!(trace, 7);

        let err = decode::<Request>(&[0xc1, 0xff, 0x00]).unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
    }

    #[test]
    fn one_encoding_serves_both_framings() {
        let req = Request::Status;
        let plain = encode(&req, 3).expect("encode");
        let (buf, start) = Encoded::new(&req, 3).expect("encode").into_stream_frame();
        assert_eq!(&buf[start..], &plain[..]);

        let link = Encoded::new(&req, 3).expect("encode").into_link_frame(42);
        let len = u32::from_be_bytes(link[..4].try_into().expect("len")) as usize;
        assert_eq!(len, link.len() - 4);
        assert_eq!(u64::from_be_bytes(link[4..12].try_into().expect("id")), 42);
        assert_eq!(&link[12..], &plain[4..]);
        assert!(len as u32 != LINK_MAGIC);
    }

    #[test]
    fn other_version_is_named() {
        let env = Envelope {
            v: 99,
            trace: 0,
            body: "x",
        };
        let body = rmp_serde::to_vec_named(&env).expect("encode");
        let err = decode::<Request>(&body).unwrap_err();
        assert!(matches!(err, WireError::Version(99)), "{err}");
    }
}
