//! Value types shared by all messages: UTF-8 strings over `Bytes`, UUIDs and raw tagged fields.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// An immutable UTF-8 string backed by [`Bytes`], so decoding a string from a frame is a slice of
/// the frame, not a copy.
///
/// Invariant: the bytes are valid UTF-8 (checked at construction).
#[derive(Clone, Default, Eq, PartialOrd, Ord)]
pub struct StrBytes(Bytes);

// Equal as their bytes are; the same bytes (a clone, a name shared between members by
// `SubscriptionDecoder`) without reading them, which makes comparing a large group's repeated
// topic lists a pointer comparison per name.
impl PartialEq for StrBytes {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        (self.0.as_ptr() == other.0.as_ptr() && self.0.len() == other.0.len()) || self.0 == other.0
    }
}

// Hash as `str` does, so that `Borrow<str>` holds its contract: a map keyed by `StrBytes` can be
// searched with a `&str`. (`Bytes` hashes a length prefix, `str` a terminator byte.)
impl std::hash::Hash for StrBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl StrBytes {
    /// The empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a static `str`, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `bytes` are UTF-8 and wraps them.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// The string.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either checks the bytes with `str::from_utf8` or takes them
        // from a `str`/`String`, and the bytes are immutable afterwards. Checking again on every
        // access would make each string read a linear scan.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the string, keeping its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for StrBytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for StrBytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StrBytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for StrBytes {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}

impl From<String> for StrBytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&String> for StrBytes {
    fn from(s: &String) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<StrBytes> for String {
    fn from(s: StrBytes) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for StrBytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for StrBytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keyed_by_strbytes_can_be_searched_with_str() {
        let mut m = std::collections::HashMap::new();
        m.insert(StrBytes::from(String::from("orders")), 1);
        assert_eq!(m.get("orders"), Some(&1));
    }

    #[test]
    fn uuid_display() {
        let u = Uuid([0x12; 16]);
        assert_eq!(u.to_string(), "12121212-1212-1212-1212-121212121212");
    }
}

/// A 128-bit UUID as Kafka writes it (16 bytes, big-endian). Topic ids use it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's "no id".
    pub const ZERO: Self = Self([0; 16]);

    /// Whether this is the all-zero UUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A tagged field this crate does not know (KIP-482), kept so that a decoded message re-encodes to
/// the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTaggedField {
    /// The tag.
    pub tag: u32,
    /// The field's encoded value.
    pub data: Bytes,
}
