//! A minimal blocking client for the codec tests: one TCP connection, one request at a time.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cohort_protocol::frame::{FrameDecoder, decode_response, encode_request};
use cohort_protocol::{Message, Request};

pub struct Conn {
    stream: TcpStream,
    correlation: i32,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            correlation: 0,
            decoder: FrameDecoder::default(),
            buf: BytesMut::new(),
        }
    }

    /// Sends a request and returns the raw response frame (header included).
    pub fn round_trip_raw<R: Request>(&mut self, version: i16, req: &R) -> Bytes {
        self.correlation += 1;
        let mut out = BytesMut::new();
        encode_request(
            &mut out,
            self.correlation,
            Some("cohort-test"),
            version,
            req,
        )
        .unwrap_or_else(|e| panic!("encode {} v{version}: {e}", R::NAME));
        self.stream.write_all(&out).unwrap();
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return frame;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .unwrap_or_else(|e| panic!("{} v{version}: read: {e}", R::NAME));
            assert!(
                n > 0,
                "{} v{version}: broker closed the connection",
                R::NAME
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let frame = self.round_trip_raw(version, req);
        let (header, body) = decode_response::<R>(frame, version).unwrap_or_else(|e| {
            panic!("decode {} v{version}: {e}", <R::Response as Message>::NAME)
        });
        assert_eq!(header.correlation_id, self.correlation);
        body
    }
}
