//! Record batches (message format v2, KIP-98): encode and decode, CRC-32C, compression, control
//! batches and transaction markers.
//!
//! Decoding is zero-copy for uncompressed batches: keys, values and header values are slices of
//! the fetched bytes. For compressed batches they are slices of one decompressed buffer per batch.
//!
//! ```text
//! baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (2)
//! crc uint32 (CRC-32C of everything after it) | attributes int16 | lastOffsetDelta int32
//! baseTimestamp int64 | maxTimestamp int64 | producerId int64 | producerEpoch int16
//! baseSequence int32 | recordCount int32 | records...
//! record: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
//!         keyLength varint | key | valueLength varint | value | headerCount varint | headers
//! ```
//!
//! # References
//! - <https://kafka.apache.org/documentation/#recordbatch>
//! - KIP-98 (format v2, control batches), KIP-82 (headers), KIP-110 (zstd)

mod compression;

use bytes::{BufMut, Bytes, BytesMut};

pub use self::compression::{Compression, compress, decompress};
use crate::error::{DecodeError, EncodeError};
use crate::primitives::{put_varint, varint_size, varlong_size};
use crate::types::StrBytes;

/// Size of the batch header up to and including `recordCount`.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Offset of the magic byte (the same in every message format, so a reader can dispatch on it).
const MAGIC_OFFSET: usize = 16;
/// Start of the CRC-covered region (attributes onwards).
const CRC_START: usize = 21;
/// Smallest possible encoded record: seven one-byte fields.
const MIN_RECORD_SIZE: usize = 7;

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// Limits and checks applied while decoding batches.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Largest decompressed size of one batch; larger batches are rejected.
    pub max_decompressed_size: usize,
    /// Check each batch's CRC-32C.
    pub verify_crc: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_decompressed_size: 256 * 1024 * 1024,
            verify_crc: true,
        }
    }
}

/// What a whole Fetch response may cost once decoded, shared by the batches of all its
/// partitions: decompressed bytes and indexed records.
///
/// Kafka's own bounds (`fetch.max.bytes`, `max.partition.fetch.bytes`) count bytes on the wire;
/// a few kilobytes of zstd can hold hundreds of megabytes of tiny records, each of which costs
/// an index entry and, once handed out, a record value. The Java client avoids holding that
/// all at once by decompressing batch by batch as the application iterates; a decoder that
/// decodes ahead needs this budget instead. When it runs out, [`BatchIter`] stops before the
/// batch that does not fit (or inside it, for records) and says so ([`BatchIter::limited`]);
/// the caller fetches the rest later, from [`BatchIter::resume_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    /// Decompressed bytes left.
    pub bytes: usize,
    /// Records left to index.
    pub records: usize,
    /// Decompressed bytes the budget started with: a batch that does not fit in a full budget
    /// can never be decoded, and is an error rather than a reason to stop.
    pub total_bytes: usize,
}

impl DecodeBudget {
    /// A budget of `bytes` decompressed bytes and `records` records.
    pub fn new(bytes: usize, records: usize) -> Self {
        Self {
            bytes,
            records,
            total_bytes: bytes,
        }
    }

    /// No bound beyond each batch's own (`DecodeOptions::max_decompressed_size`).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX, usize::MAX)
    }
}

/// One record header (KIP-82).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key.
    pub key: StrBytes,
    /// Header value; `None` is a null value.
    pub value: Option<Bytes>,
}

/// One record, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch (the batch's max timestamp for log-append time).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<RecordHeader>,
}

/// The type of a control record (the key of a record in a control batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// A transaction was aborted.
    Abort,
    /// A transaction was committed.
    Commit,
    /// A control type this crate does not know.
    Unknown(i16),
}

/// A transaction marker: the content of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// Control key version.
    pub version: i16,
    /// Abort or commit.
    pub kind: ControlRecordType,
    /// The transaction coordinator's epoch (from the marker's value, when present).
    pub coordinator_epoch: Option<i32>,
}

impl ControlRecord {
    /// Parses a control record's key and value.
    pub fn parse(record: &Record) -> Result<Self, DecodeError> {
        let key = record.key.as_deref().ok_or_else(|| DecodeError::Invalid {
            what: "control record",
            detail: "null key".into(),
        })?;
        if key.len() < 4 {
            return Err(DecodeError::eof(4, key.len()));
        }
        let version = i16::from_be_bytes([key[0], key[1]]);
        let kind = match i16::from_be_bytes([key[2], key[3]]) {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Unknown(other),
        };
        let coordinator_epoch = match record.value.as_deref() {
            Some(v) if v.len() >= 6 => Some(i32::from_be_bytes([v[2], v[3], v[4], v[5]])),
            _ => None,
        };
        Ok(Self {
            version,
            kind,
            coordinator_epoch,
        })
    }

    /// A record carrying this marker (key: version + type, value: version + coordinator epoch).
    pub fn to_record(self, offset: i64, timestamp: i64) -> Record {
        let kind = match self.kind {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Unknown(k) => k,
        };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&self.version.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let value = self.coordinator_epoch.map(|e| {
            let mut v = Vec::with_capacity(6);
            v.extend_from_slice(&0i16.to_be_bytes());
            v.extend_from_slice(&e.to_be_bytes());
            Bytes::from(v)
        });
        Record {
            offset,
            timestamp,
            key: Some(Bytes::from(key)),
            value,
            headers: Vec::new(),
        }
    }
}

#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads a zig-zag varlong from `data[*pos..end]`.
#[inline(always)]
fn varlong(data: &[u8], pos: &mut usize, end: usize) -> Result<i64, DecodeError> {
    // Fast path: one byte, the common case for deltas, lengths and counts of small records.
    if *pos < end {
        let b = data[*pos];
        if b < 0x80 {
            *pos += 1;
            return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
        }
    }
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        if *pos >= end {
            return Err(DecodeError::eof(1, 0));
        }
        let b = data[*pos];
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(DecodeError::VarintTooLong { max_bytes: 10 });
        }
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(DecodeError::VarintTooLong { max_bytes: 10 });
        }
    }
}

#[inline(always)]
fn varint(data: &[u8], pos: &mut usize, end: usize) -> Result<i32, DecodeError> {
    let v = varlong(data, pos, end)?;
    i32::try_from(v).map_err(|_| DecodeError::VarintTooLong { max_bytes: 5 })
}

/// Outcome of looking at the front of a records buffer.
enum Peek {
    /// A whole batch of this many bytes (including offset and length fields).
    Whole(usize),
    /// The buffer ends inside a batch (brokers may return a partial last batch).
    Partial,
}

fn peek(buf: &[u8]) -> Result<Peek, DecodeError> {
    if buf.len() < 12 {
        return Ok(Peek::Partial);
    }
    let length = be_i32(buf, 8);
    // Smallest batch: a v0 message after the length field; a v2 batch needs 49 bytes.
    if length < 14 {
        return Err(DecodeError::InvalidLength {
            length: i64::from(length),
            remaining: buf.len() - 12,
        });
    }
    let total = 12 + length as usize;
    if buf.len() < total {
        return Ok(Peek::Partial);
    }
    Ok(Peek::Whole(total))
}

/// The header of a record batch (magic 2): everything but the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Compression of the records section.
    pub compression: Compression,
    /// Timestamp type.
    pub timestamp_type: TimestampType,
    /// Part of a transaction.
    pub is_transactional: bool,
    /// A control batch (transaction markers).
    pub is_control: bool,
    /// `baseTimestamp` holds the delete horizon (KIP-534).
    pub has_delete_horizon: bool,
    /// `lastOffset - baseOffset`; kept when compaction removed the last records.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (or the delete horizon).
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
}

impl Default for BatchHeader {
    fn default() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            is_transactional: false,
            is_control: false,
            has_delete_horizon: false,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

impl BatchHeader {
    /// Offset of the last record (from `lastOffsetDelta`, so it survives compaction).
    pub fn last_offset(&self) -> i64 {
        // Saturating: a hostile header near i64::MAX must not overflow (the values are the
        // broker's; a valid log never gets there).
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after this batch: where the next fetch resumes.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    fn attributes(&self) -> i16 {
        let mut a = i16::from(self.compression.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            a |= 0x08;
        }
        if self.is_transactional {
            a |= 0x10;
        }
        if self.is_control {
            a |= 0x20;
        }
        if self.has_delete_horizon {
            a |= 0x40;
        }
        a
    }

    fn parse(b: &[u8]) -> Result<(Self, i32), DecodeError> {
        let attributes = be_i16(b, 21);
        let compression = Compression::from_id((attributes & 0x07) as u8)?;
        let header = BatchHeader {
            base_offset: be_i64(b, 0),
            partition_leader_epoch: be_i32(b, 12),
            compression,
            timestamp_type: if attributes & 0x08 != 0 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            is_transactional: attributes & 0x10 != 0,
            is_control: attributes & 0x20 != 0,
            has_delete_horizon: attributes & 0x40 != 0,
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
        };
        Ok((header, be_i32(b, 57)))
    }
}

/// A record batch with owned records: what a producer builds and encodes, and what
/// [`DecodedBatch::to_batch`] gives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordBatch {
    /// The batch header.
    pub header: BatchHeader,
    /// The records.
    pub records: Vec<Record>,
}

impl RecordBatch {
    /// Decodes one whole batch from the front of `buf` into owned records (see
    /// [`DecodedBatch::decode`] for the zero-allocation form).
    pub fn decode(buf: &mut Bytes, opts: &DecodeOptions) -> Result<Self, DecodeError> {
        Ok(DecodedBatch::decode(buf, opts)?.to_batch())
    }

    /// Encodes the batch, header fields as they are (see [`RecordBatchBuilder`] to derive them
    /// from the records), appending to `buf`. On error `buf` is left as it was.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let start = buf.len();
        let r = self.encode_inner(buf, start);
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    fn encode_inner(&self, buf: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
        let h = &self.header;
        let count = i32::try_from(self.records.len()).map_err(|_| EncodeError::TooLong {
            what: "record batch",
            length: self.records.len(),
        })?;
        if h.compression == Compression::None {
            // An estimate: payloads plus a typical per-record overhead; `put_record` reserves
            // exactly what each record needs anyway.
            let payload: usize = self
                .records
                .iter()
                .map(|r| {
                    r.key.as_ref().map_or(0, Bytes::len)
                        + r.value.as_ref().map_or(0, Bytes::len)
                        + 12
                })
                .sum();
            buf.reserve(BATCH_HEADER_SIZE + payload);
        } else {
            buf.reserve(BATCH_HEADER_SIZE + 64);
        }
        buf.put_i64(h.base_offset);
        buf.put_i32(0); // length, patched below
        buf.put_i32(h.partition_leader_epoch);
        buf.put_i8(2);
        buf.put_u32(0); // crc, patched below
        buf.put_i16(h.attributes());
        buf.put_i32(h.last_offset_delta);
        buf.put_i64(h.base_timestamp);
        buf.put_i64(h.max_timestamp);
        buf.put_i64(h.producer_id);
        buf.put_i16(h.producer_epoch);
        buf.put_i32(h.base_sequence);
        buf.put_i32(count);
        if h.compression == Compression::None {
            for r in &self.records {
                put_record(buf, h, r)?;
            }
        } else {
            let mut plain = BytesMut::new();
            for r in &self.records {
                put_record(&mut plain, h, r)?;
            }
            let mut compressed = Vec::with_capacity(plain.len() / 2 + 64);
            compress(h.compression, &plain, &mut compressed)?;
            buf.put_slice(&compressed);
        }
        let length = buf.len() - start - 12;
        let length = i32::try_from(length).map_err(|_| EncodeError::TooLong {
            what: "record batch",
            length,
        })?;
        buf[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c(&buf[start + CRC_START..]);
        buf[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

#[inline]
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

fn len_of(b: &Option<Bytes>) -> Result<i32, EncodeError> {
    match b {
        None => Ok(-1),
        Some(b) => i32::try_from(b.len()).map_err(|_| EncodeError::TooLong {
            what: "record field",
            length: b.len(),
        }),
    }
}

/// (body size, body size + its varint length prefix) of a record.
fn record_size(h: &BatchHeader, r: &Record) -> Result<(i32, usize), EncodeError> {
    // In i128: a record offset and a base offset far apart (a decoded batch whose offsets
    // saturated, a caller's mistake) must be an error, not an overflow (found by fuzzing).
    let delta = i128::from(r.offset) - i128::from(h.base_offset);
    let offset_delta = i32::try_from(delta).map_err(|_| EncodeError::TooLong {
        what: "record offset delta",
        length: usize::try_from(delta.unsigned_abs()).unwrap_or(usize::MAX),
    })?;
    let ts_delta = r.timestamp.wrapping_sub(h.base_timestamp);
    let key_len = len_of(&r.key)?;
    let value_len = len_of(&r.value)?;
    let mut body = 1
        + varlong_size(ts_delta)
        + varint_size(offset_delta)
        + varint_size(key_len)
        + r.key.as_ref().map_or(0, Bytes::len)
        + varint_size(value_len)
        + r.value.as_ref().map_or(0, Bytes::len)
        + varint_size(r.headers.len() as i32);
    for hd in &r.headers {
        let vl = len_of(&hd.value)?;
        body += varint_size(hd.key.len() as i32)
            + hd.key.len()
            + varint_size(vl)
            + hd.value.as_ref().map_or(0, Bytes::len);
    }
    let b = i32::try_from(body).map_err(|_| EncodeError::TooLong {
        what: "record",
        length: body,
    })?;
    Ok((b, body + varint_size(b)))
}

/// Writes an unsigned varint into `out` at `at`; returns the new position.
#[inline(always)]
fn stack_uvarint(out: &mut [u8; 40], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
}

#[inline(always)]
fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

#[inline(always)]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_record(buf: &mut BytesMut, h: &BatchHeader, r: &Record) -> Result<(), EncodeError> {
    let (body, total) = record_size(h, r)?;
    buf.reserve(total);
    // The fixed part (length, attributes, deltas, key length) is at most 31 bytes: assemble it
    // on the stack and copy it once, instead of a capacity check per byte.
    let mut head = [0u8; 40];
    let mut at = stack_uvarint(&mut head, 0, zigzag32(body));
    head[at] = 0;
    at += 1;
    at = stack_uvarint(
        &mut head,
        at,
        zigzag64(r.timestamp.wrapping_sub(h.base_timestamp)),
    );
    at = stack_uvarint(&mut head, at, zigzag32((r.offset - h.base_offset) as i32));
    at = stack_uvarint(
        &mut head,
        at,
        zigzag32(r.key.as_ref().map_or(-1, |k| k.len() as i32)),
    );
    buf.put_slice(&head[..at]);
    if let Some(k) = &r.key {
        buf.put_slice(k);
    }
    let at = stack_uvarint(
        &mut head,
        0,
        zigzag32(r.value.as_ref().map_or(-1, |v| v.len() as i32)),
    );
    buf.put_slice(&head[..at]);
    if let Some(v) = &r.value {
        buf.put_slice(v);
    }
    put_varint(buf, r.headers.len() as i32);
    for hd in &r.headers {
        put_varint(buf, hd.key.len() as i32);
        buf.put_slice(hd.key.as_bytes());
        match &hd.value {
            None => put_varint(buf, -1),
            Some(v) => {
                put_varint(buf, v.len() as i32);
                buf.put_slice(v);
            }
        }
    }
    Ok(())
}

/// Where one decoded record's parts lie in [`DecodedBatch::data`]. Lengths of -1 are nulls.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    timestamp: i64,
    key_start: u32,
    key_len: i32,
    value_start: u32,
    value_len: i32,
    headers_start: u32,
    headers_count: u32,
}

/// A decoded batch whose records are read in place: decoding checks the CRC and every record's
/// framing and builds a compact index, but allocates nothing per record and takes no reference
/// counts. Keys and values are borrowed slices ([`RecordRef::value`]) or, on request, `Bytes`
/// sharing the batch's buffer ([`RecordRef::value_bytes`]).
///
/// This is how Kafka's Java client reads batches too (`DefaultRecordBatch` iterates lazily);
/// the consumer turns records into owned values only when it hands them to the application.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// The batch header.
    pub header: BatchHeader,
    data: Bytes,
    entries: Vec<Entry>,
    /// Records the header announces (`entries` may index fewer).
    count: usize,
    /// Records read: indexed, or skipped as before the starting offset.
    walked: usize,
}

impl DecodedBatch {
    /// Decodes one whole batch from the front of `buf`.
    pub fn decode(buf: &mut Bytes, opts: &DecodeOptions) -> Result<Self, DecodeError> {
        match peek(buf)? {
            Peek::Partial => Err(DecodeError::eof(12.max(buf.len() + 1), buf.len())),
            Peek::Whole(n) => {
                let batch = buf.split_to(n);
                Self::decode_exact(batch, opts)
            }
        }
    }

    /// Decodes a buffer that holds exactly one batch.
    fn decode_exact(batch: Bytes, opts: &DecodeOptions) -> Result<Self, DecodeError> {
        Self::decode_prefix(batch, opts, usize::MAX, i64::MIN)
    }

    /// Decodes a buffer that holds exactly one batch, indexing at most `max_records` of its
    /// records ([`DecodedBatch::is_partial`] when there were more).
    fn decode_prefix(
        batch: Bytes,
        opts: &DecodeOptions,
        max_records: usize,
        from: i64,
    ) -> Result<Self, DecodeError> {
        let b = &batch[..];
        if b.len() <= MAGIC_OFFSET {
            return Err(DecodeError::eof(MAGIC_OFFSET + 1, b.len()));
        }
        let magic = b[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(DecodeError::UnsupportedMagic(magic));
        }
        if b.len() < BATCH_HEADER_SIZE {
            return Err(DecodeError::eof(BATCH_HEADER_SIZE, b.len()));
        }
        if opts.verify_crc {
            let expected = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
            let actual = crc32c(&b[CRC_START..]);
            if actual != expected {
                return Err(DecodeError::CrcMismatch { expected, actual });
            }
        }
        let (header, count) = BatchHeader::parse(b)?;
        if count < 0 {
            return Err(DecodeError::InvalidLength {
                length: i64::from(count),
                remaining: b.len() - BATCH_HEADER_SIZE,
            });
        }
        let data = if header.compression == Compression::None {
            batch.slice(BATCH_HEADER_SIZE..)
        } else {
            Bytes::from(decompress(
                header.compression,
                &b[BATCH_HEADER_SIZE..],
                opts.max_decompressed_size,
            )?)
        };
        if data.len() > u32::MAX as usize {
            return Err(DecodeError::InvalidLength {
                length: data.len() as i64,
                remaining: data.len(),
            });
        }
        let count = count as usize;
        if count > data.len() / MIN_RECORD_SIZE {
            return Err(DecodeError::InvalidLength {
                length: count as i64,
                remaining: data.len(),
            });
        }
        let (entries, walked) = index_records(&data, count, max_records, from, &header)?;
        Ok(DecodedBatch {
            header,
            data,
            entries,
            count,
            walked,
        })
    }

    /// Whether only a prefix of the batch's records was indexed (a record budget ran out).
    pub fn is_partial(&self) -> bool {
        self.walked < self.count
    }

    /// The offset after the last indexed record: where to continue reading this partition.
    pub fn next_offset(&self) -> i64 {
        if self.is_partial() {
            self.entries
                .last()
                .map_or(self.header.base_offset, |e| e.offset.saturating_add(1))
        } else {
            self.header.next_offset()
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record at `index`.
    pub fn get(&self, index: usize) -> Option<RecordRef<'_>> {
        self.entries.get(index).map(|e| RecordRef {
            data: &self.data,
            e,
        })
    }

    /// The records, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.entries.iter().map(|e| RecordRef {
            data: &self.data,
            e,
        })
    }

    /// The (decompressed) records section the records point into.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The batch with owned records.
    pub fn to_batch(&self) -> RecordBatch {
        RecordBatch {
            header: self.header,
            records: self.records().map(|r| r.to_record()).collect(),
        }
    }
}

/// One record of a [`DecodedBatch`], read in place.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    data: &'a Bytes,
    e: &'a Entry,
}

impl<'a> RecordRef<'a> {
    /// Offset in the partition.
    pub fn offset(&self) -> i64 {
        self.e.offset
    }

    /// Timestamp in milliseconds since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.e.timestamp
    }

    fn slice(&self, start: u32, len: i32) -> Option<&'a [u8]> {
        (len >= 0).then(|| &self.data[start as usize..start as usize + len as usize])
    }

    fn bytes(&self, start: u32, len: i32) -> Option<Bytes> {
        (len >= 0).then(|| {
            self.data
                .slice(start as usize..start as usize + len as usize)
        })
    }

    /// Key, borrowed; `None` is a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.slice(self.e.key_start, self.e.key_len)
    }

    /// Value, borrowed; `None` is a null value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.slice(self.e.value_start, self.e.value_len)
    }

    /// Key as `Bytes` sharing the batch's buffer.
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.bytes(self.e.key_start, self.e.key_len)
    }

    /// Value as `Bytes` sharing the batch's buffer.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.bytes(self.e.value_start, self.e.value_len)
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.e.headers_count as usize
    }

    /// Headers, borrowed, in order. (Their framing and UTF-8 keys were checked when the batch
    /// was decoded.)
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let data: &'a [u8] = &self.data[..];
        let mut pos = self.e.headers_start as usize;
        (0..self.e.headers_count).map(move |_| {
            let (k, v) = read_header(data, &mut pos);
            (std::str::from_utf8(k).unwrap_or_default(), v)
        })
    }

    /// The record as an owned value (keys and values share the batch's buffer).
    pub fn to_record(self) -> Record {
        let mut headers = Vec::with_capacity(self.header_count());
        let mut pos = self.e.headers_start as usize;
        for _ in 0..self.e.headers_count {
            let (k, v) = read_header(&self.data[..], &mut pos);
            let key_start = k.as_ptr() as usize - self.data.as_ptr() as usize;
            let key = StrBytes::from_utf8(self.data.slice(key_start..key_start + k.len()))
                .unwrap_or_default();
            let value = v.map(|v| {
                let s = v.as_ptr() as usize - self.data.as_ptr() as usize;
                self.data.slice(s..s + v.len())
            });
            headers.push(RecordHeader { key, value });
        }
        Record {
            offset: self.e.offset,
            timestamp: self.e.timestamp,
            key: self.key_bytes(),
            value: self.value_bytes(),
            headers,
        }
    }
}

/// Reads one already-validated header at `pos`.
fn read_header<'a>(data: &'a [u8], pos: &mut usize) -> (&'a [u8], Option<&'a [u8]>) {
    let end = data.len();
    let kl = varint(data, pos, end).unwrap_or(0).max(0) as usize;
    let k = &data[*pos..*pos + kl];
    *pos += kl;
    let vl = varint(data, pos, end).unwrap_or(-1);
    let v = if vl < 0 {
        None
    } else {
        let v = &data[*pos..*pos + vl as usize];
        *pos += vl as usize;
        Some(v)
    };
    (k, v)
}

/// Reads a varint length followed by that many bytes; returns `(start, len)` with len -1 for
/// null.
#[inline(always)]
fn nullable_range(data: &[u8], pos: &mut usize, end: usize) -> Result<(u32, i32), DecodeError> {
    let len = varint(data, pos, end)?;
    if len < 0 {
        if len == -1 {
            return Ok((0, -1));
        }
        return Err(DecodeError::InvalidLength {
            length: i64::from(len),
            remaining: end - *pos,
        });
    }
    if len as usize > end - *pos {
        return Err(DecodeError::InvalidLength {
            length: i64::from(len),
            remaining: end - *pos,
        });
    }
    let start = *pos as u32;
    *pos += len as usize;
    Ok((start, len))
}

/// Indexes the first `take` of a batch's `count` records at `from` or after, and says how many
/// records it read (all of them checked for framing only when all are read: the rest is read
/// again when the partition is fetched from there).
fn index_records(
    data: &[u8],
    count: usize,
    take: usize,
    from: i64,
    h: &BatchHeader,
) -> Result<(Vec<Entry>, usize), DecodeError> {
    let end = data.len();
    let mut pos = 0usize;
    // Records before `from` are checked but not kept, so the vector holds at most `take`.
    let mut entries = Vec::with_capacity(take.min(count));
    let mut walked = 0usize;
    while walked < count && entries.len() < take {
        walked += 1;
        let len = varint(data, &mut pos, end)?;
        if len < 1 || len as usize > end - pos {
            return Err(DecodeError::InvalidLength {
                length: i64::from(len),
                remaining: end - pos,
            });
        }
        let rec_end = pos + len as usize;
        pos += 1; // attributes: unused in format v2
        let ts_delta = varlong(data, &mut pos, rec_end)?;
        let offset_delta = varint(data, &mut pos, rec_end)?;
        let (key_start, key_len) = nullable_range(data, &mut pos, rec_end)?;
        let (value_start, value_len) = nullable_range(data, &mut pos, rec_end)?;
        let n_headers = varint(data, &mut pos, rec_end)?;
        if n_headers < 0 || n_headers as usize > (rec_end - pos) / 2 {
            return Err(DecodeError::InvalidLength {
                length: i64::from(n_headers),
                remaining: rec_end - pos,
            });
        }
        let headers_start = pos as u32;
        for _ in 0..n_headers {
            let (ks, kl) = nullable_range(data, &mut pos, rec_end)?;
            if kl < 0 {
                return Err(DecodeError::Invalid {
                    what: "record header",
                    detail: "null key".into(),
                });
            }
            std::str::from_utf8(&data[ks as usize..ks as usize + kl as usize])
                .map_err(|_| DecodeError::InvalidUtf8)?;
            nullable_range(data, &mut pos, rec_end)?;
        }
        if pos != rec_end {
            return Err(DecodeError::Invalid {
                what: "record",
                detail: format!(
                    "length says {len} bytes, fields used {}",
                    len as usize - (rec_end - pos)
                ),
            });
        }
        let timestamp = match h.timestamp_type {
            TimestampType::CreateTime => h.base_timestamp.wrapping_add(ts_delta),
            TimestampType::LogAppendTime => h.max_timestamp,
        };
        let offset = h.base_offset.wrapping_add(i64::from(offset_delta));
        if offset < from {
            continue;
        }
        entries.push(Entry {
            offset,
            timestamp,
            key_start,
            key_len,
            value_start,
            value_len,
            headers_start,
            headers_count: n_headers as u32,
        });
    }
    if walked == count && pos != end {
        return Err(DecodeError::TrailingBytes {
            what: "record batch",
            remaining: end - pos,
        });
    }
    Ok((entries, walked))
}

/// Iterates over the batches in a records field (a Fetch response partition's `records`).
///
/// A broker may cut the last batch short when it hits the fetch size limit; the iterator ends
/// there without an error and [`BatchIter::truncated`] says so. With a [`DecodeBudget`], it
/// also ends, without an error, where the budget runs out ([`BatchIter::limited`]); a batch
/// too large for a whole budget is an error. Any other malformation is an error item, after
/// which iteration stops.
#[derive(Debug)]
pub struct BatchIter {
    rest: Bytes,
    opts: DecodeOptions,
    budget: DecodeBudget,
    truncated: bool,
    limited: bool,
    failed: bool,
    resume: Option<i64>,
    from: i64,
}

impl BatchIter {
    /// Iterates over `records` with the given options.
    pub fn new(records: Bytes, opts: DecodeOptions) -> Self {
        Self::with_budget(records, opts, DecodeBudget::unlimited())
    }

    /// Iterates over `records`, spending at most `budget`.
    pub fn with_budget(records: Bytes, opts: DecodeOptions, budget: DecodeBudget) -> Self {
        Self {
            rest: records,
            opts,
            budget,
            truncated: false,
            limited: false,
            failed: false,
            resume: None,
            from: i64::MIN,
        }
    }

    /// Hands out only records at `offset` or after: those before it are checked but neither
    /// indexed nor counted against the record budget. A fetch from the middle of a batch gets
    /// the whole batch back, so without this a batch with more records before the fetch offset
    /// than the budget allows would be cut before the offset on every fetch, and the partition
    /// would never move on.
    pub fn starting_at(mut self, offset: i64) -> Self {
        self.from = offset;
        self
    }

    /// Whether the input ended inside a batch.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether iteration stopped because the budget ran out: records after
    /// [`BatchIter::resume_offset`] were left for a later fetch.
    pub fn limited(&self) -> bool {
        self.limited
    }

    /// Where the last batch handed out ends, or, when it was indexed only in part, the offset
    /// after its last indexed record (`None` before the first batch).
    pub fn resume_offset(&self) -> Option<i64> {
        self.resume
    }

    /// What is left of the budget.
    pub fn budget(&self) -> DecodeBudget {
        self.budget
    }
}

impl Iterator for BatchIter {
    type Item = Result<DecodedBatch, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.limited || self.rest.is_empty() {
            return None;
        }
        match peek(&self.rest) {
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
            Ok(Peek::Partial) => {
                self.truncated = true;
                None
            }
            Ok(Peek::Whole(_)) if self.budget.records == 0 => {
                self.limited = true;
                None
            }
            Ok(Peek::Whole(n)) => {
                let batch = self.rest.split_to(n);
                let per_batch = self.opts.max_decompressed_size;
                let opts = DecodeOptions {
                    max_decompressed_size: per_batch.min(self.budget.bytes),
                    ..self.opts
                };
                match DecodedBatch::decode_prefix(batch, &opts, self.budget.records, self.from) {
                    Ok(b) => {
                        if b.header.compression != Compression::None {
                            self.budget.bytes -= b.data.len();
                        }
                        self.budget.records -= b.len();
                        self.limited = b.is_partial();
                        self.resume = Some(b.next_offset());
                        Some(Ok(b))
                    }
                    // Too large for what is left, but not for a whole budget: a later fetch
                    // (where this partition comes earlier) decodes it.
                    Err(DecodeError::LimitExceeded { .. })
                        if self.budget.bytes < per_batch
                            && self.budget.bytes < self.budget.total_bytes =>
                    {
                        self.limited = true;
                        None
                    }
                    Err(e) => {
                        self.failed = true;
                        Some(Err(e))
                    }
                }
            }
        }
    }
}

/// Decodes every whole batch in `records` into owned records, ignoring a truncated tail.
pub fn decode_batches(
    records: Bytes,
    opts: &DecodeOptions,
) -> Result<Vec<RecordBatch>, DecodeError> {
    BatchIter::new(records, *opts)
        .map(|b| b.map(|b| b.to_batch()))
        .collect()
}

/// Builds a batch from records, deriving offset deltas, timestamps and counts.
#[derive(Debug, Clone, Default)]
pub struct RecordBatchBuilder {
    batch: RecordBatch,
}

impl RecordBatchBuilder {
    /// A builder for a batch starting at `base_offset` (0 for a produce request: the broker
    /// assigns offsets).
    pub fn new(base_offset: i64) -> Self {
        Self {
            batch: RecordBatch {
                header: BatchHeader {
                    base_offset,
                    ..BatchHeader::default()
                },
                records: Vec::new(),
            },
        }
    }

    /// Sets the compression.
    pub fn compression(mut self, c: Compression) -> Self {
        self.batch.header.compression = c;
        self
    }

    /// Marks the batch transactional with the given producer.
    pub fn transactional(mut self, producer_id: i64, producer_epoch: i16) -> Self {
        self.batch.header.is_transactional = true;
        self.batch.header.producer_id = producer_id;
        self.batch.header.producer_epoch = producer_epoch;
        self
    }

    /// Marks the batch as a control batch.
    pub fn control(mut self) -> Self {
        self.batch.header.is_control = true;
        self
    }

    /// Appends a record at the next offset.
    pub fn push(
        mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<RecordHeader>,
    ) -> Self {
        let offset = self
            .batch
            .header
            .base_offset
            .saturating_add(self.batch.records.len() as i64);
        self.batch.records.push(Record {
            offset,
            timestamp,
            key,
            value,
            headers,
        });
        self
    }

    /// Appends a record as is (its offset must not be below the base offset).
    pub fn record(mut self, record: Record) -> Self {
        self.batch.records.push(record);
        self
    }

    /// The batch, with `lastOffsetDelta`, `baseTimestamp` and `maxTimestamp` derived.
    pub fn build(mut self) -> RecordBatch {
        let h = &mut self.batch.header;
        let records = &self.batch.records;
        if let Some(first) = records.first() {
            h.base_timestamp = first.timestamp;
        }
        h.max_timestamp = records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(h.base_timestamp);
        h.last_offset_delta = records
            .last()
            // Saturated: an offset out of the batch's range is refused when it is encoded.
            .map_or(0, |r| {
                let d = i128::from(r.offset) - i128::from(h.base_offset);
                i32::try_from(d).unwrap_or(if d < 0 { i32::MIN } else { i32::MAX })
            });
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` batches of `per_batch` one-byte records each, zstd, back to back.
    fn tiny_batches(n: i64, per_batch: i64) -> Bytes {
        let mut out = BytesMut::new();
        for b in 0..n {
            let mut builder = RecordBatchBuilder::new(b * per_batch).compression(Compression::Zstd);
            for _ in 0..per_batch {
                builder = builder.push(0, None, Some(Bytes::from_static(b"x")), vec![]);
            }
            builder.build().encode(&mut out).unwrap();
        }
        out.freeze()
    }

    #[test]
    fn a_budget_stops_before_the_batch_that_does_not_fit() {
        let records = tiny_batches(3, 1000);
        let one = DecodedBatch::decode(&mut records.clone(), &DecodeOptions::default()).unwrap();
        let size = one.data().len();
        // Room for two batches' decompressed bytes and a half.
        let mut it = BatchIter::with_budget(
            records,
            DecodeOptions::default(),
            DecodeBudget::new(size * 5 / 2, usize::MAX),
        );
        assert_eq!(it.next().unwrap().unwrap().len(), 1000);
        assert_eq!(it.next().unwrap().unwrap().len(), 1000);
        assert!(it.next().is_none());
        assert!(it.limited() && !it.truncated());
        assert_eq!(it.resume_offset(), Some(2000));
        assert_eq!(it.budget().bytes, size / 2);
    }

    #[test]
    fn a_batch_too_large_for_a_whole_budget_is_an_error() {
        let mut it = BatchIter::with_budget(
            tiny_batches(1, 1000),
            DecodeOptions::default(),
            DecodeBudget::new(100, usize::MAX),
        );
        assert!(matches!(
            it.next(),
            Some(Err(DecodeError::LimitExceeded { limit: 100, .. }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn a_record_budget_indexes_a_prefix_and_resumes_after_it() {
        let mut it = BatchIter::with_budget(
            tiny_batches(2, 10),
            DecodeOptions::default(),
            DecodeBudget::new(usize::MAX, 4),
        );
        let b = it.next().unwrap().unwrap();
        assert_eq!(b.len(), 4);
        assert!(b.is_partial());
        assert_eq!(b.next_offset(), 4);
        assert_eq!(b.records().last().unwrap().offset(), 3);
        assert!(it.next().is_none());
        assert!(it.limited());
        assert_eq!(it.resume_offset(), Some(4));
        assert_eq!(it.budget().records, 0);
    }

    /// A fetch from the middle of a batch gets the whole batch: the records before the fetch
    /// offset must not use up the budget, or the fetch would resume where it started, for ever.
    #[test]
    fn records_before_the_starting_offset_cost_no_budget() {
        let mut it = BatchIter::with_budget(
            tiny_batches(2, 10),
            DecodeOptions::default(),
            DecodeBudget::new(usize::MAX, 4),
        )
        .starting_at(8);
        let b = it.next().unwrap().unwrap();
        assert_eq!(b.records().map(|r| r.offset()).collect::<Vec<_>>(), [8, 9]);
        assert!(!b.is_partial());
        assert_eq!(b.next_offset(), 10);
        let b = it.next().unwrap().unwrap();
        assert_eq!(
            b.records().map(|r| r.offset()).collect::<Vec<_>>(),
            [10, 11]
        );
        assert!(b.is_partial());
        assert!(it.next().is_none());
        assert_eq!(it.resume_offset(), Some(12), "past the starting offset");
    }

    #[test]
    fn the_amplified_test_batch_decodes() {
        for c in [Compression::Zstd, Compression::None] {
            let mut b = crate::testing::amplified_batch(1000, c);
            let d = DecodedBatch::decode(&mut b, &DecodeOptions::default()).unwrap();
            assert_eq!(d.len(), 1000);
            assert_eq!(d.records().last().unwrap().offset(), 999);
            assert_eq!(d.get(5).unwrap().value(), Some(&b"x"[..]));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn offsets_near_the_end_of_the_range_do_not_overflow() {
        let h = BatchHeader {
            base_offset: i64::MAX - 1,
            last_offset_delta: i32::MAX,
            ..BatchHeader::default()
        };
        assert_eq!(h.last_offset(), i64::MAX);
        assert_eq!(h.next_offset(), i64::MAX);
    }

    /// Found by the fuzz campaign (`record_batch`): a batch whose record offsets saturated at
    /// `i64::MAX` above a negative base offset overflowed the offset delta when re-encoded.
    #[test]
    fn a_decoded_batch_with_offsets_far_from_its_base_re_encodes_without_overflow() {
        let input: &[u8] = &[
            128, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 60, 165, 0, 0, 0, 2, 149, 244, 36, 25, 117, 88, 0,
            0, 0, 45, 74, 71, 129, 0, 79, 0, 79, 79, 79, 79, 79, 255, 207, 79, 79, 75, 79, 79, 0,
            0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 20, 0, 49, 165, 0, 0, 0, 2, 2, 0, 1, 0,
        ];
        let opts = DecodeOptions {
            max_decompressed_size: 4 << 20,
            verify_crc: false,
        };
        let mut decoded_any = false;
        for batch in BatchIter::new(Bytes::copy_from_slice(input), opts) {
            let Ok(decoded) = batch else { break };
            decoded_any = true;
            let batch = decoded.to_batch();
            let _ = batch.encode(&mut BytesMut::new());
        }
        assert!(decoded_any, "the input decodes to a batch");
        let far = RecordBatchBuilder::new(i64::MIN + 1)
            .record(Record {
                offset: i64::MAX,
                timestamp: 0,
                key: None,
                value: None,
                headers: Vec::new(),
            })
            .build();
        assert!(matches!(
            far.encode(&mut BytesMut::new()),
            Err(EncodeError::TooLong { .. })
        ));
    }

    fn sample(compression: Compression) -> RecordBatch {
        let mut b = RecordBatchBuilder::new(100).compression(compression);
        for i in 0..50i64 {
            let headers = if i % 3 == 0 {
                vec![
                    RecordHeader {
                        key: "trace".into(),
                        value: Some(Bytes::from(format!("t{i}"))),
                    },
                    RecordHeader {
                        key: "null".into(),
                        value: None,
                    },
                ]
            } else {
                Vec::new()
            };
            let key = (i % 5 != 0).then(|| Bytes::from(format!("key-{i}")));
            let value = (i % 7 != 0).then(|| Bytes::from(vec![i as u8; (i * 13) as usize]));
            b = b.push(1_700_000_000_000 + i * 10, key, value, headers);
        }
        b.build()
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for c in Compression::ALL {
            let batch = sample(c);
            let mut buf = BytesMut::new();
            batch.encode(&mut buf).unwrap();
            let mut bytes = buf.freeze();
            let back = RecordBatch::decode(&mut bytes, &DecodeOptions::default()).unwrap();
            assert!(bytes.is_empty());
            assert_eq!(back, batch, "{c:?}");
            assert_eq!(back.header.next_offset(), 150);
        }
    }

    #[test]
    fn crc_mismatch_is_detected() {
        let mut buf = BytesMut::new();
        sample(Compression::None).encode(&mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let err = RecordBatch::decode(&mut buf.freeze(), &DecodeOptions::default()).unwrap_err();
        assert!(matches!(err, DecodeError::CrcMismatch { .. }), "{err}");
    }

    #[test]
    fn truncated_tail_ends_iteration_quietly() {
        let mut buf = BytesMut::new();
        sample(Compression::None).encode(&mut buf).unwrap();
        sample(Compression::Lz4).encode(&mut buf).unwrap();
        let full = buf.freeze();
        let cut = full.slice(..full.len() - 10);
        let mut it = BatchIter::new(cut, DecodeOptions::default());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
        assert!(it.truncated());
    }

    #[test]
    fn control_records_round_trip() {
        let marker = ControlRecord {
            version: 0,
            kind: ControlRecordType::Commit,
            coordinator_epoch: Some(7),
        };
        let batch = RecordBatchBuilder::new(10)
            .transactional(42, 1)
            .control()
            .record(marker.to_record(10, 5))
            .build();
        let mut buf = BytesMut::new();
        batch.encode(&mut buf).unwrap();
        let back = RecordBatch::decode(&mut buf.freeze(), &DecodeOptions::default()).unwrap();
        assert!(back.header.is_control && back.header.is_transactional);
        assert_eq!(ControlRecord::parse(&back.records[0]).unwrap(), marker);
    }

    #[test]
    fn decoded_values_share_the_input_buffer() {
        let mut buf = BytesMut::new();
        sample(Compression::None).encode(&mut buf).unwrap();
        let input = buf.freeze();
        let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
        let batch = RecordBatch::decode(&mut input.clone(), &DecodeOptions::default()).unwrap();
        let v = batch.records[1].value.as_ref().unwrap();
        assert!(range.contains(&(v.as_ptr() as usize)), "value was copied");
    }

    #[test]
    fn hostile_counts_and_lengths_are_rejected() {
        let mut buf = BytesMut::new();
        sample(Compression::None).encode(&mut buf).unwrap();
        // Record count of 2^31-1 with the CRC recomputed so that only the count is wrong.
        buf[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = super::crc32c(&buf[CRC_START..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = RecordBatch::decode(&mut buf.freeze(), &DecodeOptions::default()).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidLength { .. }), "{err}");
        // A batch length below the header size.
        let mut b = BytesMut::from(&[0u8; 12][..]);
        b[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(RecordBatch::decode(&mut b.freeze(), &DecodeOptions::default()).is_err());
    }
}
