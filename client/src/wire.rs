//! Frames on a stream: [`write_frame`] and [`read_frame`] move one frame of the
//! [`chorus_proto::wire`] format (re-exported here) over any async byte stream.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use chorus_proto::wire::*;

/// Writes one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, trace: u64) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let buf = encode(msg, trace)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads the length prefix and body of one frame, refusing frames over `max` bytes before
/// reading their body. The buffer grows with the bytes that arrive, so a length prefix alone
/// allocates nothing.
pub async fn read_frame_bytes<R>(r: &mut R, max: usize) -> Result<Vec<u8>, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(eof_is_truncated)?;
    let size = u32::from_be_bytes(len) as usize;
    if size > max {
        return Err(WireError::TooLarge { size, limit: max });
    }
    read_body(r, size).await
}

/// Reads a frame body of `size` bytes, already checked against the limit; the buffer grows
/// with the bytes that arrive.
pub async fn read_body<R>(r: &mut R, size: usize) -> Result<Vec<u8>, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut body = Vec::with_capacity(size.min(FIRST_CHUNK));
    let got = r
        .take(size as u64)
        .read_to_end(&mut body)
        .await
        .map_err(eof_is_truncated)?;
    if got < size {
        return Err(WireError::Truncated);
    }
    Ok(body)
}

/// The first allocation for a frame body; it then grows with what arrives.
const FIRST_CHUNK: usize = 64 * 1024;

/// Reads and decodes one frame.
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<(T, u64), WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let body = read_frame_bytes(r, max).await?;
    decode(&body)
}

/// A stream that ended mid-frame is a truncated frame.
pub fn eof_is_truncated(e: std::io::Error) -> WireError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Truncated
    } else {
        WireError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Level, Request};

    #[tokio::test]
    async fn round_trip_and_limits() {
        let req = Request::Get {
            bucket: b"b".to_vec(),
            key: b"k".to_vec(),
            r: Level::All,
        };
        let frame = encode(&req, 7).expect("encode");
        let mut rd = &frame[..];
        let (back, trace): (Request, u64) = read_frame(&mut rd, 1024).await.expect("decode");
        assert_eq!(back, req);
        assert_eq!(trace, 7);

        let mut rd = &frame[..];
        let err = read_frame::<_, Request>(&mut rd, 4).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }), "{err}");

        let mut rd = &frame[..frame.len() - 1];
        let err = read_frame::<_, Request>(&mut rd, 1024).await.unwrap_err();
        assert!(matches!(err, WireError::Truncated), "{err}");

        let garbage = [0u8, 0, 0, 3, 0xc1, 0xff, 0x00];
        let mut rd = &garbage[..];
        let err = read_frame::<_, Request>(&mut rd, 1024).await.unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
    }
}
