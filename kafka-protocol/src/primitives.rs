//! Kafka's primitive types on the wire: fixed-width integers, (compact) strings, bytes and array
//! lengths, unsigned and zig-zag varints, UUIDs.
//!
//! Readers take `&mut Bytes` and return typed errors instead of panicking; every length read
//! from the input is checked against the bytes that remain before anything is allocated, so a
//! hostile prefix costs nothing. The generated message code is written in terms of these
//! functions.
//!
//! # References
//! - <https://kafka.apache.org/protocol#protocol_types>
//! - KIP-482 (compact strings and arrays, tagged fields)

use bytes::{Buf, BufMut, Bytes};

use crate::error::{DecodeError, EncodeError};
use crate::types::{StrBytes, Uuid};

/// Upper bound on the capacity reserved up front for a decoded array. Larger arrays still decode;
/// their vector grows as elements actually arrive, so a hostile length cannot reserve memory.
pub const MAX_PREALLOCATED_ELEMENTS: usize = 4096;

#[inline]
fn need(buf: &Bytes, n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        Err(DecodeError::eof(n, buf.len()))
    } else {
        Ok(())
    }
}

/// Reads an `int8`.
#[inline]
pub fn get_i8(buf: &mut Bytes) -> Result<i8, DecodeError> {
    need(buf, 1)?;
    Ok(buf.get_i8())
}

/// Reads a `bool` (any non-zero byte is true, as in Kafka's Java reader).
#[inline]
pub fn get_bool(buf: &mut Bytes) -> Result<bool, DecodeError> {
    need(buf, 1)?;
    Ok(buf.get_u8() != 0)
}

/// Reads an `int16`.
#[inline]
pub fn get_i16(buf: &mut Bytes) -> Result<i16, DecodeError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

/// Reads a `uint16`.
#[inline]
pub fn get_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

/// Reads an `int32`.
#[inline]
pub fn get_i32(buf: &mut Bytes) -> Result<i32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

/// Reads a `uint32`.
#[inline]
pub fn get_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

/// Reads an `int64`.
#[inline]
pub fn get_i64(buf: &mut Bytes) -> Result<i64, DecodeError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

/// Reads a `float64`.
#[inline]
pub fn get_f64(buf: &mut Bytes) -> Result<f64, DecodeError> {
    need(buf, 8)?;
    Ok(buf.get_f64())
}

/// Reads a `uuid`.
#[inline]
pub fn get_uuid(buf: &mut Bytes) -> Result<Uuid, DecodeError> {
    need(buf, 16)?;
    let mut b = [0u8; 16];
    buf.copy_to_slice(&mut b);
    Ok(Uuid(b))
}

/// Reads an unsigned varint of at most 5 bytes (`uint32`), as used by compact lengths and tagged
/// fields.
#[inline]
pub fn get_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        need(buf, 1)?;
        let b = buf.get_u8();
        if i == 4 && b > 0x0f {
            return Err(DecodeError::VarintTooLong { max_bytes: 5 });
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VarintTooLong { max_bytes: 5 })
}

/// Reads a zig-zag encoded `varint` (`int32`), as used inside records.
#[inline]
pub fn get_varint(buf: &mut Bytes) -> Result<i32, DecodeError> {
    let v = get_uvarint(buf)?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a zig-zag encoded `varlong` (`int64`).
#[inline]
pub fn get_varlong(buf: &mut Bytes) -> Result<i64, DecodeError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        need(buf, 1)?;
        let b = buf.get_u8();
        if i == 9 && b > 0x01 {
            return Err(DecodeError::VarintTooLong { max_bytes: 10 });
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(DecodeError::VarintTooLong { max_bytes: 10 })
}

/// Reads a length prefix: `int16`/`int32` (classic) or unsigned varint minus one (compact).
/// Returns `None` for the null marker (-1, or 0 in compact form).
#[inline]
fn get_len(buf: &mut Bytes, compact: bool, wide: bool) -> Result<Option<usize>, DecodeError> {
    let len: i64 = if compact {
        i64::from(get_uvarint(buf)?) - 1
    } else if wide {
        i64::from(get_i32(buf)?)
    } else {
        i64::from(get_i16(buf)?)
    };
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(DecodeError::InvalidLength {
            length: len,
            remaining: buf.len(),
        });
    }
    Ok(Some(len as usize))
}

#[inline]
fn take(buf: &mut Bytes, len: usize) -> Result<Bytes, DecodeError> {
    if len > buf.len() {
        return Err(DecodeError::InvalidLength {
            length: len as i64,
            remaining: buf.len(),
        });
    }
    Ok(buf.split_to(len))
}

#[inline]
fn to_str(bytes: Bytes) -> Result<StrBytes, DecodeError> {
    StrBytes::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
}

/// Reads a nullable string.
#[inline]
pub fn get_nullable_string(
    buf: &mut Bytes,
    compact: bool,
) -> Result<Option<StrBytes>, DecodeError> {
    match get_len(buf, compact, false)? {
        None => Ok(None),
        Some(len) => Ok(Some(to_str(take(buf, len)?)?)),
    }
}

/// Reads a string; the null marker is an error naming `field`.
#[inline]
pub fn get_string(
    buf: &mut Bytes,
    compact: bool,
    field: &'static str,
    version: i16,
) -> Result<StrBytes, DecodeError> {
    get_nullable_string(buf, compact)?.ok_or(DecodeError::NullNotAllowed { field, version })
}

/// Reads nullable bytes (`int32` length in classic form).
#[inline]
pub fn get_nullable_bytes(buf: &mut Bytes, compact: bool) -> Result<Option<Bytes>, DecodeError> {
    match get_len(buf, compact, true)? {
        None => Ok(None),
        Some(len) => Ok(Some(take(buf, len)?)),
    }
}

/// Reads bytes; the null marker is an error naming `field`.
#[inline]
pub fn get_bytes(
    buf: &mut Bytes,
    compact: bool,
    field: &'static str,
    version: i16,
) -> Result<Bytes, DecodeError> {
    get_nullable_bytes(buf, compact)?.ok_or(DecodeError::NullNotAllowed { field, version })
}

/// Reads a nullable array length and checks that at least `min_element_size` bytes per element
/// remain, so that no caller allocates for elements the input cannot hold.
#[inline]
pub fn get_nullable_array_len(
    buf: &mut Bytes,
    compact: bool,
    min_element_size: usize,
) -> Result<Option<usize>, DecodeError> {
    let len = get_len(buf, compact, true)?;
    if let Some(n) = len
        && n.saturating_mul(min_element_size) > buf.len()
    {
        return Err(DecodeError::InvalidLength {
            length: n as i64,
            remaining: buf.len(),
        });
    }
    Ok(len)
}

/// Reads an array length; the null marker is an error naming `field`.
#[inline]
pub fn get_array_len(
    buf: &mut Bytes,
    compact: bool,
    min_element_size: usize,
    field: &'static str,
    version: i16,
) -> Result<usize, DecodeError> {
    get_nullable_array_len(buf, compact, min_element_size)?
        .ok_or(DecodeError::NullNotAllowed { field, version })
}

/// Capacity to reserve for an array of `len` elements: never more than
/// [`MAX_PREALLOCATED_ELEMENTS`].
#[inline]
pub fn initial_capacity(len: usize) -> usize {
    len.min(MAX_PREALLOCATED_ELEMENTS)
}

/// Reads the tagged-field header (tag, size) and splits off the value's bytes.
#[inline]
pub fn get_tagged_field(buf: &mut Bytes) -> Result<(u32, Bytes), DecodeError> {
    let tag = get_uvarint(buf)?;
    let size = get_uvarint(buf)? as usize;
    Ok((tag, take(buf, size)?))
}

/// Checks that a known tagged field's value used all of its announced bytes.
#[inline]
pub fn check_tagged_consumed(tag: u32, announced: usize, rest: &Bytes) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TaggedFieldSize {
            tag,
            announced,
            used: announced - rest.len(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Writers

/// Writes an unsigned varint.
#[inline]
pub fn put_uvarint(buf: &mut impl BufMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes a zig-zag `varint`.
#[inline]
pub fn put_varint(buf: &mut impl BufMut, v: i32) {
    put_uvarint(buf, ((v << 1) ^ (v >> 31)) as u32);
}

/// Writes a zig-zag `varlong`.
#[inline]
pub fn put_varlong(buf: &mut impl BufMut, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        buf.put_u8((u as u8) | 0x80);
        u >>= 7;
    }
    buf.put_u8(u as u8);
}

/// Encoded size of an unsigned varint.
#[inline]
pub const fn uvarint_size(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// Encoded size of a zig-zag `varint`.
#[inline]
pub const fn varint_size(v: i32) -> usize {
    uvarint_size(((v << 1) ^ (v >> 31)) as u32)
}

/// Encoded size of a zig-zag `varlong`.
#[inline]
pub const fn varlong_size(v: i64) -> usize {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes a `bool`.
#[inline]
pub fn put_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(u8::from(v));
}

/// Writes a `uuid`.
#[inline]
pub fn put_uuid(buf: &mut impl BufMut, v: &Uuid) {
    buf.put_slice(&v.0);
}

#[inline]
fn put_len(
    buf: &mut impl BufMut,
    len: usize,
    compact: bool,
    wide: bool,
    what: &'static str,
) -> Result<(), EncodeError> {
    if compact {
        let l = u32::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(1))
            .ok_or(EncodeError::TooLong { what, length: len })?;
        put_uvarint(buf, l);
    } else if wide {
        let l = i32::try_from(len).map_err(|_| EncodeError::TooLong { what, length: len })?;
        buf.put_i32(l);
    } else {
        let l = i16::try_from(len).map_err(|_| EncodeError::TooLong { what, length: len })?;
        buf.put_i16(l);
    }
    Ok(())
}

#[inline]
fn put_null(buf: &mut impl BufMut, compact: bool, wide: bool) {
    if compact {
        buf.put_u8(0);
    } else if wide {
        buf.put_i32(-1);
    } else {
        buf.put_i16(-1);
    }
}

/// Writes a string.
#[inline]
pub fn put_string(buf: &mut impl BufMut, s: &str, compact: bool) -> Result<(), EncodeError> {
    put_len(buf, s.len(), compact, false, "string")?;
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Writes a nullable string.
#[inline]
pub fn put_nullable_string(
    buf: &mut impl BufMut,
    s: Option<&str>,
    compact: bool,
) -> Result<(), EncodeError> {
    match s {
        Some(s) => put_string(buf, s, compact),
        None => {
            put_null(buf, compact, false);
            Ok(())
        }
    }
}

/// Writes bytes.
#[inline]
pub fn put_bytes(buf: &mut impl BufMut, b: &[u8], compact: bool) -> Result<(), EncodeError> {
    put_len(buf, b.len(), compact, true, "bytes")?;
    buf.put_slice(b);
    Ok(())
}

/// Writes nullable bytes.
#[inline]
pub fn put_nullable_bytes(
    buf: &mut impl BufMut,
    b: Option<&[u8]>,
    compact: bool,
) -> Result<(), EncodeError> {
    match b {
        Some(b) => put_bytes(buf, b, compact),
        None => {
            put_null(buf, compact, true);
            Ok(())
        }
    }
}

/// Writes an array length.
#[inline]
pub fn put_array_len(buf: &mut impl BufMut, len: usize, compact: bool) -> Result<(), EncodeError> {
    put_len(buf, len, compact, true, "array")
}

/// Writes the null array marker.
#[inline]
pub fn put_null_array(buf: &mut impl BufMut, compact: bool) {
    put_null(buf, compact, true);
}

/// Encoded size of a string of `len` bytes (also correct for the null marker with `len = 0`
/// in compact form, and off by none in classic form since both take 2 bytes).
#[inline]
pub const fn string_size(len: usize, compact: bool) -> usize {
    if compact {
        uvarint_size(len as u32 + 1) + len
    } else {
        2 + len
    }
}

/// Encoded size of bytes of length `len`.
#[inline]
pub const fn bytes_size(len: usize, compact: bool) -> usize {
    if compact {
        uvarint_size(len as u32 + 1) + len
    } else {
        4 + len
    }
}

/// Encoded size of an array length prefix.
#[inline]
pub const fn array_len_size(len: usize, compact: bool) -> usize {
    if compact {
        uvarint_size(len as u32 + 1)
    } else {
        4
    }
}

/// Encoded size of a null marker for strings (2 or 1 bytes).
#[inline]
pub const fn null_string_size(compact: bool) -> usize {
    if compact { 1 } else { 2 }
}

/// Encoded size of a nullable string.
#[inline]
pub fn nullable_string_size(s: Option<&str>, compact: bool) -> usize {
    match s {
        Some(s) => string_size(s.len(), compact),
        None => null_string_size(compact),
    }
}

/// Encoded size of a null marker for bytes and arrays (4 or 1 bytes).
#[inline]
pub const fn null_bytes_size(compact: bool) -> usize {
    if compact { 1 } else { 4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_sizes() {
        for v in [0i32, 1, -1, 63, -64, 64, 300, i32::MAX, i32::MIN] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_size(v), "{v}");
            assert_eq!(get_varint(&mut Bytes::from(b)).unwrap(), v);
        }
        for v in [0i64, 1, -1, 1 << 40, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_size(v), "{v}");
            assert_eq!(get_varlong(&mut Bytes::from(b)).unwrap(), v);
        }
        for v in [0u32, 127, 128, 16383, 16384, u32::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(b.len(), uvarint_size(v));
            assert_eq!(get_uvarint(&mut Bytes::from(b)).unwrap(), v);
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(
            get_uvarint(&mut b),
            Err(DecodeError::VarintTooLong { .. })
        ));
        let mut b = Bytes::from_static(&[0xff; 11]);
        assert!(matches!(
            get_varlong(&mut b),
            Err(DecodeError::VarintTooLong { .. })
        ));
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // int32 array length of 2^31-1 followed by nothing: rejected before any allocation.
        let mut b = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            get_nullable_array_len(&mut b, false, 1),
            Err(DecodeError::InvalidLength { .. })
        ));
        // Negative lengths other than -1.
        let mut b = Bytes::from_static(&[0xff, 0xfe, b'a']);
        assert!(matches!(
            get_nullable_string(&mut b, false),
            Err(DecodeError::InvalidLength { length: -2, .. })
        ));
        // Compact bytes announcing 4 GiB.
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            get_nullable_bytes(&mut b, true),
            Err(DecodeError::InvalidLength { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let mut b = Bytes::from_static(&[0, 2, 0xc3, 0x28]);
        assert_eq!(
            get_nullable_string(&mut b, false),
            Err(DecodeError::InvalidUtf8)
        );
    }
}
