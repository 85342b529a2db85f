//! Size-prefixed frames and request/response headers.
//!
//! Every Kafka message travels as `int32 size` + `size` bytes. Requests start with a request
//! header (v0-v2: api key, api version, correlation id, client id, tagged fields from v2),
//! responses with a response header (v0: correlation id; v1 adds tagged fields). Which header
//! version a message uses follows from its API key and version (see [`ApiKey`]).
//!
//! [`FrameDecoder`] is check-then-split: it returns `Ok(None)` until a whole frame is buffered and
//! rejects a size above its maximum before reserving any memory for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ApiKey;
use crate::codec::{Decode, Encode, Request};
use crate::error::{DecodeError, EncodeError};
use crate::messages::{RequestHeader, ResponseHeader};
use crate::types::StrBytes;

/// Default maximum frame size: 100 MiB, Kafka's default `socket.request.max.bytes` (brokers) and
/// far above `fetch.max.bytes` (50 MiB) for responses.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Splits a byte stream into frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The maximum frame size.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes the next whole frame (without its size prefix) off the front of `src`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case it reserves room for the rest
    /// of the frame, which is bounded by the maximum. A negative size or one above the maximum is
    /// an error, and the stream cannot be resynchronised after it.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if size < 0 {
            return Err(DecodeError::InvalidLength {
                length: i64::from(size),
                remaining: src.len() - 4,
            });
        }
        let size = size as usize;
        if size > self.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(size).freeze()))
    }
}

/// Encodes a whole request frame: size prefix, request header of the right version, body.
///
/// On error nothing is left in `buf` (it is truncated back to its length on entry).
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &R,
) -> Result<(), EncodeError> {
    let header = RequestHeader {
        request_api_key: R::API_KEY.as_i16(),
        request_api_version: version,
        correlation_id,
        client_id: client_id.map(|c| StrBytes::from(c.to_owned())),
        ..Default::default()
    };
    encode_request_parts(buf, &header, R::API_KEY, version, |b| {
        body.encode(b, version)
    })
}

/// Encodes a request frame from a header and a body writer; the building block of
/// [`encode_request`] for callers that hold a body of a type only known at run time.
pub fn encode_request_parts(
    buf: &mut BytesMut,
    header: &RequestHeader,
    api_key: ApiKey,
    version: i16,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    let result = (|| {
        buf.put_i32(0);
        header.encode(buf, api_key.request_header_version(version))?;
        body(buf)?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            let size = buf.len() - start - 4;
            let size = i32::try_from(size).map_err(|_| EncodeError::TooLong {
                what: "frame",
                length: size,
            });
            match size {
                Ok(size) => {
                    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
                    Ok(())
                }
                Err(e) => {
                    buf.truncate(start);
                    Err(e)
                }
            }
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Encodes a whole response frame (used by test brokers and the scripted fake coordinator).
pub fn encode_response<B: Encode>(
    buf: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &B,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_i32(0);
    let header = ResponseHeader {
        correlation_id,
        ..Default::default()
    };
    let result = header
        .encode(buf, api_key.response_header_version(version))
        .and_then(|()| body.encode(buf, version));
    if let Err(e) = result {
        buf.truncate(start);
        return Err(e);
    }
    let size = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Reads the correlation id at the front of a response frame without consuming it, so a client
/// can find the request a response answers before it knows how to decode the rest.
pub fn peek_correlation_id(frame: &Bytes) -> Result<i32, DecodeError> {
    if frame.len() < 4 {
        return Err(DecodeError::UnexpectedEof {
            needed: 4,
            remaining: frame.len(),
        });
    }
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

/// Decodes a response frame for `R` at `version`: header, then body, which must use every byte.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, R::Response), DecodeError> {
    let header = ResponseHeader::decode(&mut frame, R::API_KEY.response_header_version(version))?;
    let body = <R::Response as Decode>::decode(&mut frame, version)?;
    if !frame.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what: <R::Response as crate::Message>::NAME,
            remaining: frame.len(),
        });
    }
    Ok((header, body))
}

/// Decodes a request frame's header; returns the API key (when known), the header and the body's
/// bytes. For brokers and fakes.
pub fn decode_request_header(
    mut frame: Bytes,
) -> Result<(Option<ApiKey>, RequestHeader, Bytes), DecodeError> {
    if frame.len() < 4 {
        return Err(DecodeError::UnexpectedEof {
            needed: 4,
            remaining: frame.len(),
        });
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::from_i16(key);
    // An unknown API still has a v1 header: api key, version, correlation id, client id.
    let header_version = api_key.map_or(1, |k| k.request_header_version(version));
    let header = RequestHeader::decode(&mut frame, header_version)?;
    Ok((api_key, header, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ApiVersionsRequest, ApiVersionsResponse, HeartbeatRequest};

    #[test]
    fn decoder_waits_for_whole_frames() {
        let d = FrameDecoder::new(1024);
        let mut src = BytesMut::new();
        assert_eq!(d.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&[0, 0, 0, 5, 1, 2]);
        assert_eq!(d.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&[3, 4, 5, 0, 0]);
        assert_eq!(
            d.decode(&mut src).unwrap().as_deref(),
            Some(&[1u8, 2, 3, 4, 5][..])
        );
        assert_eq!(&src[..], &[0, 0]);
    }

    #[test]
    fn oversized_and_negative_frames_are_rejected_before_allocating() {
        let d = FrameDecoder::new(1024);
        let mut src = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let cap = src.capacity();
        assert!(matches!(
            d.decode(&mut src),
            Err(DecodeError::FrameTooLarge {
                size: 0x7fff_ffff,
                max: 1024
            })
        ));
        assert_eq!(
            src.capacity(),
            cap,
            "no memory reserved for a rejected frame"
        );
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(
            d.decode(&mut src),
            Err(DecodeError::InvalidLength { length: -2, .. })
        ));
    }

    #[test]
    fn request_header_versions_follow_flexibility() {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 7, Some("cohort"), 4, &HeartbeatRequest::default()).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let (key, header, _) = decode_request_header(frame).unwrap();
        assert_eq!(key, Some(ApiKey::Heartbeat));
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("cohort"));
    }

    #[test]
    fn api_versions_response_always_uses_header_v0() {
        // KIP-511: the response header of ApiVersions stays v0 even at v3+, so that it can be read
        // before versions are known.
        let mut buf = BytesMut::new();
        encode_response(
            &mut buf,
            ApiKey::ApiVersions,
            3,
            9,
            &ApiVersionsResponse::default(),
        )
        .unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(peek_correlation_id(&frame).unwrap(), 9);
        let (h, _) = decode_response::<ApiVersionsRequest>(frame, 3).unwrap();
        assert_eq!(h.correlation_id, 9);
    }

    #[test]
    fn failed_encode_leaves_buffer_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let bad = crate::messages::JoinGroupRequest {
            group_instance_id: Some("x".into()),
            ..Default::default()
        };
        assert!(encode_request(&mut buf, 1, None, 3, &bad).is_err());
        assert_eq!(&buf[..], b"keep");
    }
}
