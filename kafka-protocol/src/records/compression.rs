//! Compression codecs of record batches: gzip, snappy (xerial framing or raw), lz4 (frame format)
//! and zstd.
//!
//! Decompression is bounded: output beyond `limit` bytes is an error, so a small hostile batch
//! cannot expand into gigabytes. (The LZ4 frame format lets a frame declare blocks of up to
//! 4 MiB, so an LZ4 reader may hold about 8 MiB of block buffers whatever the limit.)

use std::io::{Read, Write};

use crate::error::{DecodeError, EncodeError};

/// A record batch's compression codec (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy; written with the xerial framing the Java client uses, read in either form.
    Snappy,
    /// LZ4 frame format (KIP-57: correct header checksum).
    Lz4,
    /// Zstandard (KIP-110).
    Zstd,
}

impl Compression {
    /// Every codec.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id in batch attributes.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an id.
    pub fn from_id(id: u8) -> Result<Self, DecodeError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(DecodeError::UnknownCompression(other)),
        })
    }

    /// Kafka's name for the codec (`compression.type`).
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The xerial snappy stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// Uncompressed size of one xerial block, as in the Java client (32 KiB).
const XERIAL_BLOCK: usize = 32 * 1024;

fn dec_err(codec: Compression, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Decompression {
        codec: codec.name(),
        reason: e.to_string(),
    }
}

/// Output beyond the caller's bound: a typed error, so a caller with a budget can tell "too
/// much for now" from a corrupt batch.
fn over_limit(codec: Compression, limit: usize) -> DecodeError {
    DecodeError::LimitExceeded {
        what: match codec {
            Compression::None => "batch",
            Compression::Gzip => "gzip-decompressed batch",
            Compression::Snappy => "snappy-decompressed batch",
            Compression::Lz4 => "lz4-decompressed batch",
            Compression::Zstd => "zstd-decompressed batch",
        },
        limit,
    }
}

fn enc_err(codec: Compression, e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Compression {
        codec: codec.name(),
        reason: e.to_string(),
    }
}

/// Reads all of `r` into `out`, failing once more than `limit` bytes come out.
fn read_bounded(
    codec: Compression,
    r: impl Read,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), DecodeError> {
    let mut r = r.take(limit as u64 + 1);
    r.read_to_end(out).map_err(|e| dec_err(codec, e))?;
    if out.len() > limit {
        return Err(over_limit(codec, limit));
    }
    Ok(())
}

/// Decompresses `input` into a new buffer of at most `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    // Compressed record data is usually 2-5x smaller; the hint is capped by the limit.
    let mut out = Vec::with_capacity((input.len() * 4).min(limit));
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(over_limit(codec, limit));
            }
            out.extend_from_slice(input);
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::GzDecoder::new(input), &mut out, limit)?;
        }
        Compression::Snappy => snappy_decompress(input, &mut out, limit)?,
        Compression::Lz4 => {
            read_bounded(
                codec,
                lz4_flex::frame::FrameDecoder::new(input),
                &mut out,
                limit,
            )?;
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(input).map_err(|e| dec_err(codec, e))?;
            read_bounded(codec, d, &mut out, limit)?;
        }
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DecodeError> {
    let codec = Compression::Snappy;
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecodeError> {
        let len = snap::raw::decompress_len(block).map_err(|e| dec_err(codec, e))?;
        if out.len() + len > limit {
            return Err(over_limit(codec, limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| dec_err(codec, e))?;
        Ok(())
    };
    // The Java client writes xerial-framed snappy; librdkafka and others may write a raw block.
    if input.len() >= 16 && input[..8] == XERIAL_HEADER[..8] {
        let mut rest = &input[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(dec_err(codec, "truncated xerial block header"));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if n > rest.len() {
                return Err(dec_err(codec, "truncated xerial block"));
            }
            raw_block(&rest[..n], out)?;
            rest = &rest[n..];
        }
        Ok(())
    } else {
        raw_block(input, out)
    }
}

/// Compresses `input`, appending to `out`.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            e.write_all(input).map_err(|e| enc_err(codec, e))?;
            e.finish().map_err(|e| enc_err(codec, e))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_HEADER);
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK) {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                let max = snap::raw::max_compress_len(chunk.len());
                let start = out.len();
                out.resize(start + max, 0);
                let n = enc
                    .compress(chunk, &mut out[start..])
                    .map_err(|e| enc_err(codec, e))?;
                out.truncate(start + n);
                out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
            }
        }
        Compression::Lz4 => {
            // 64 KiB independent blocks, as Kafka's Java `KafkaLZ4BlockOutputStream` writes them;
            // it also keeps the reader's buffers small.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            e.write_all(input).map_err(|e| enc_err(codec, e))?;
            e.finish().map_err(|e| enc_err(codec, e))?;
        }
        Compression::Zstd => {
            // Level 3 is zstd's and Kafka's default.
            let compressed = zstd::bulk::compress(input, 3).map_err(|e| enc_err(codec, e))?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in Compression::ALL {
            let mut c = Vec::new();
            compress(codec, &input, &mut c).unwrap();
            let d = decompress(codec, &c, input.len()).unwrap();
            assert_eq!(d, input, "{codec:?}");
            assert!(
                matches!(
                    decompress(codec, &c, input.len() - 1),
                    Err(DecodeError::LimitExceeded { limit, .. }) if limit == input.len() - 1
                ),
                "{codec:?} limit"
            );
        }
    }

    #[test]
    fn raw_snappy_blocks_are_accepted() {
        let input = b"hello hello hello hello".repeat(10);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            input
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(
                decompress(codec, b"\x00\x01garbage\xff", 1 << 20).is_err(),
                "{codec:?}"
            );
        }
    }
}
