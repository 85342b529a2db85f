//! Random values valid at a given version, for property tests, fuzzing and benchmarks.
//!
//! Deterministic: the same seed gives the same values, so a failing case can be replayed from the
//! seed that proptest or a benchmark prints.

use bytes::Bytes;

use crate::types::{RawTaggedField, StrBytes, Uuid};

/// Builds a random value that is valid at `version` (fields absent from the version keep their
/// defaults, nulls only where the version allows them).
pub trait Random: Sized {
    /// A random value for `version`.
    fn random(rng: &mut Rng, version: i16) -> Self;
}

/// A small deterministic generator (SplitMix64), with a nesting depth that keeps arrays of structs
/// from growing without bound.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
    depth: u32,
    /// Longest array generated at the outermost level.
    pub max_len: usize,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            depth: 0,
            max_len: 4,
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Random bool.
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Whether a nullable value should be null (one time in four).
    pub fn null(&mut self) -> bool {
        self.below(4) == 0
    }

    /// Random `i8`; small values and edge values are favoured, as they exercise varint widths.
    pub fn i8(&mut self) -> i8 {
        self.i64() as i8
    }

    /// Random `i16`.
    pub fn i16(&mut self) -> i16 {
        self.i64() as i16
    }

    /// Random `u16`.
    pub fn u16(&mut self) -> u16 {
        self.i64() as u16
    }

    /// Random `i32`.
    pub fn i32(&mut self) -> i32 {
        self.i64() as i32
    }

    /// Random `u32`.
    pub fn u32(&mut self) -> u32 {
        self.i64() as u32
    }

    /// Random `i64`.
    pub fn i64(&mut self) -> i64 {
        match self.below(6) {
            0 => 0,
            1 => -1,
            2 => self.below(200) as i64,
            3 => i64::MAX - self.below(3) as i64,
            4 => i64::MIN + self.below(3) as i64,
            _ => self.next_u64() as i64,
        }
    }

    /// Random `f64`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Random UUID.
    pub fn uuid(&mut self) -> Uuid {
        let a = self.next_u64().to_be_bytes();
        let b = self.next_u64().to_be_bytes();
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&a);
        u[8..].copy_from_slice(&b);
        Uuid(u)
    }

    /// Random string, sometimes with multi-byte characters.
    pub fn string(&mut self) -> StrBytes {
        const ALPHABET: &[&str] = &["a", "b", "z", "-", "_", ".", "0", "é", "ß", "日", "🦀"];
        let n = self.below(12) as usize;
        let mut s = String::with_capacity(n * 2);
        for _ in 0..n {
            s.push_str(ALPHABET[self.below(ALPHABET.len() as u64) as usize]);
        }
        StrBytes::from(s)
    }

    /// Random bytes.
    pub fn bytes(&mut self) -> Bytes {
        let n = self.below(24) as usize;
        let v: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
        Bytes::from(v)
    }

    /// Random array length; shorter at deeper nesting.
    pub fn array_len(&mut self) -> usize {
        let max = self.max_len.saturating_sub(self.depth as usize * 2).max(1);
        self.below(max as u64 + 1) as usize
    }

    /// Marks entry into an array's elements.
    pub fn enter(&mut self) {
        self.depth += 1;
    }

    /// Marks the end of an array's elements.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Unknown tagged fields, with tags above any Kafka 4.0 defines, in ascending order.
    pub fn unknown_tagged_fields(&mut self) -> Vec<RawTaggedField> {
        if self.below(3) != 0 {
            return Vec::new();
        }
        let n = 1 + self.below(2);
        (0..n)
            .map(|i| RawTaggedField {
                tag: 1000 + (i as u32) * 7 + self.below(5) as u32,
                data: self.bytes(),
            })
            .collect()
    }
}

/// A record batch of `records` records of one byte each (null key, value `x`, no headers),
/// offsets from 0, compressed with `compression`: a few kilobytes that decompress to about 8
/// bytes per record and cost an index entry each. What a hostile broker sends to make a small
/// Fetch response expand; patch the first 8 bytes (the base offset, outside the CRC) to place
/// it in a partition.
pub fn amplified_batch(records: i32, compression: crate::records::Compression) -> Bytes {
    use bytes::BufMut;
    let records = records.max(1);
    let mut plain = bytes::BytesMut::with_capacity(records as usize * 10);
    for delta in 0..records {
        // attributes, timestamp delta 0, offset delta, null key, value of 1 byte, no headers
        let body = 1 + 1 + crate::primitives::varint_size(delta) + 1 + 1 + 1 + 1;
        crate::primitives::put_varint(&mut plain, body as i32);
        plain.put_i8(0);
        crate::primitives::put_varlong(&mut plain, 0);
        crate::primitives::put_varint(&mut plain, delta);
        crate::primitives::put_varint(&mut plain, -1);
        crate::primitives::put_varint(&mut plain, 1);
        plain.put_u8(b'x');
        crate::primitives::put_varint(&mut plain, 0);
    }
    let mut data = Vec::new();
    crate::records::compress(compression, &plain, &mut data).expect("compress");
    let mut buf = bytes::BytesMut::with_capacity(61 + data.len());
    buf.put_i64(0); // base offset
    buf.put_i32((61 - 12 + data.len()) as i32);
    buf.put_i32(0); // partition leader epoch
    buf.put_i8(2);
    buf.put_u32(0); // crc, below
    buf.put_i16(i16::from(compression.id()));
    buf.put_i32(records - 1); // last offset delta
    buf.put_i64(0); // base timestamp
    buf.put_i64(0); // max timestamp
    buf.put_i64(-1); // producer id
    buf.put_i16(-1);
    buf.put_i32(-1);
    buf.put_i32(records);
    buf.put_slice(&data);
    let crc = crate::records::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}
