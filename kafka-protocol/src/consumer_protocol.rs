//! The embedded consumer protocol: what members put in JoinGroup's protocol metadata and what the
//! leader puts in SyncGroup's assignments, plus the user data of Kafka's sticky assignors.
//!
//! Both blobs start with an `int16` version, then the body of
//! [`ConsumerProtocolSubscription`] or [`ConsumerProtocolAssignment`] at that version (never
//! flexible). A decoder must accept versions newer than it knows and read them with the newest
//! format it has, because new versions may only append fields (Java `ConsumerProtocol`; the
//! schema's own note). Some Rust codecs omit the prefix (kafka-protocol-rs #128); this module
//! always writes it.
//!
//! # References
//! - KIP-429 (owned partitions, v1), KIP-792 (generation id, v2), KIP-881 (rack id, v3)
//! - KIP-54 and KIP-341 (sticky assignor user data v0 and v1)

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{Decode, Message};
use crate::error::{DecodeError, EncodeError};
pub use crate::messages::consumer_protocol_assignment::TopicPartition as AssignedTopicPartitions;
pub use crate::messages::consumer_protocol_subscription::TopicPartition as OwnedTopicPartitions;
pub use crate::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use crate::primitives::{
    get_array_len, get_i32, get_nullable_bytes, get_nullable_string, get_string, initial_capacity,
    put_array_len, put_nullable_bytes, put_string,
};
use crate::types::StrBytes;

/// The protocol type of consumer groups in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Kafka's `DEFAULT_GENERATION` for members that report none.
pub const DEFAULT_GENERATION: i32 = -1;

fn check_version(v: i16, what: &'static str) -> Result<(), DecodeError> {
    if v < 0 {
        return Err(DecodeError::Invalid {
            what,
            detail: format!("negative version {v}"),
        });
    }
    Ok(())
}

fn encode_prefixed<M: Message>(m: &M, version: i16) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(2 + m.encoded_size(version)?);
    buf.put_i16(version);
    m.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Decodes a version-prefixed blob; returns the version it announced and the message read with
/// `min(version, newest known)`. Bytes after the known fields are ignored (newer versions append).
fn decode_prefixed<M: Message>(
    mut bytes: Bytes,
    what: &'static str,
) -> Result<(i16, M), DecodeError> {
    if bytes.len() < 2 {
        return Err(DecodeError::eof(2, bytes.len()));
    }
    let version = bytes.get_i16();
    check_version(version, what)?;
    let read_as = version.min(M::VERSIONS.max);
    let m = M::decode(&mut bytes, read_as)?;
    Ok((version, m))
}

/// Encodes a subscription with its version prefix.
pub fn encode_subscription(
    s: &ConsumerProtocolSubscription,
    version: i16,
) -> Result<Bytes, EncodeError> {
    encode_prefixed(s, version)
}

/// Decodes a subscription; returns the version it was read as and the subscription.
///
/// A subscription that does not decode at the version it announces is read at the older
/// versions, newest first, and taken if one layout reads it whole: segmentio/kafka-go announces
/// version 1 without the owned partitions version 1 adds (kafka-go #762, #1156), which Java's
/// decoder rejects and franz-go reads as version 0. A leader that could not read it would give
/// that member nothing.
pub fn decode_subscription(
    bytes: Bytes,
) -> Result<(i16, ConsumerProtocolSubscription), DecodeError> {
    match decode_prefixed(bytes.clone(), "consumer subscription") {
        Ok(ok) => Ok(ok),
        Err(e) => decode_subscription_older(&bytes, e),
    }
}

/// The older layouts [`decode_subscription`] tries when the announced one fails with `err`.
fn decode_subscription_older(
    bytes: &Bytes,
    err: DecodeError,
) -> Result<(i16, ConsumerProtocolSubscription), DecodeError> {
    let announced = match bytes.get(..2) {
        Some(&[hi, lo]) => i16::from_be_bytes([hi, lo]),
        _ => return Err(err),
    };
    let newest = announced.min(ConsumerProtocolSubscription::VERSIONS.max);
    for version in (0..newest).rev() {
        let mut body = bytes.slice(2..);
        if let Ok(s) = ConsumerProtocolSubscription::decode(&mut body, version)
            && body.is_empty()
        {
            return Ok((version, s));
        }
    }
    Err(err)
}

/// Decodes the subscriptions of one group's members as [`decode_subscription`] does, faster
/// when they repeat one topic list, as the members of a large group do (2,000 members of 500
/// topics are a million names to check and slice, most of a leader's decoding): a member whose
/// metadata begins with the same bytes as the last one decoded, version and topic list, shares
/// that member's list (`topics` is an `Arc`), and only the fields after it are read.
#[derive(Debug, Default)]
pub struct SubscriptionDecoder {
    last: Option<LastTopics>,
}

#[derive(Debug)]
struct LastTopics {
    /// The version prefix and topic array, as the last member sent them.
    prefix: Bytes,
    /// The version announced, and the one the fields after the topics are read at.
    version: i16,
    read_as: i16,
    topics: Arc<[StrBytes]>,
}

impl SubscriptionDecoder {
    /// Decodes one member's metadata; the same answer as [`decode_subscription`].
    pub fn decode(
        &mut self,
        bytes: Bytes,
    ) -> Result<(i16, ConsumerProtocolSubscription), DecodeError> {
        if let Some(last) = &self.last
            && bytes.starts_with(&last.prefix)
            && let Ok(s) = decode_after_topics(
                bytes.slice(last.prefix.len()..),
                last.read_as,
                last.topics.clone(),
            )
        {
            return Ok((last.version, s));
        }
        let (version, s): (i16, ConsumerProtocolSubscription) =
            match decode_prefixed(bytes.clone(), "consumer subscription") {
                Ok(ok) => ok,
                Err(e) => return decode_subscription_older(&bytes, e),
            };
        // Versions 0-3 are not flexible: an int16 version, an int32 count, each name an int16
        // length and its bytes.
        let len = 6 + s.topics.iter().map(|t| 2 + t.len()).sum::<usize>();
        self.last = bytes.get(..len).map(|_| LastTopics {
            prefix: bytes.slice(..len),
            version,
            read_as: version.min(ConsumerProtocolSubscription::VERSIONS.max),
            topics: s.topics.clone(),
        });
        Ok((version, s))
    }
}

/// The fields of a subscription after its topic list, read at `version` (as the generated
/// `ConsumerProtocolSubscription::decode` reads them; `tests` compares the two).
fn decode_after_topics(
    mut buf: Bytes,
    version: i16,
    topics: Arc<[StrBytes]>,
) -> Result<ConsumerProtocolSubscription, DecodeError> {
    let user_data = get_nullable_bytes(&mut buf, false)?;
    let owned_partitions = if version >= 1 {
        let n = get_array_len(&mut buf, false, 1, "OwnedPartitions", version)?;
        let mut v = Vec::with_capacity(initial_capacity(n));
        for _ in 0..n {
            v.push(OwnedTopicPartitions::decode(&mut buf, version)?);
        }
        v
    } else {
        Vec::new()
    };
    let generation_id = if version >= 2 {
        get_i32(&mut buf)?
    } else {
        DEFAULT_GENERATION
    };
    let rack_id = if version >= 3 {
        get_nullable_string(&mut buf, false)?
    } else {
        None
    };
    Ok(ConsumerProtocolSubscription {
        topics,
        user_data,
        owned_partitions,
        generation_id,
        rack_id,
    })
}

/// Encodes an assignment with its version prefix.
pub fn encode_assignment(
    a: &ConsumerProtocolAssignment,
    version: i16,
) -> Result<Bytes, EncodeError> {
    encode_prefixed(a, version)
}

/// Bytes of a name slot in [`TopicSlots`].
const SLOT: usize = 32;

/// The longest topic name Kafka allows (`org.apache.kafka.common.internals.Topic`'s
/// `MAX_NAME_LENGTH`).
const TOPIC_NAME_MAX: usize = 249;

/// A group's topics for [`AssignmentWriter::global_partitions`]: each name encoded as a STRING
/// in 32-byte slots, one or (over 30 bytes) several in a row, copied whole (a fixed-size copy,
/// where copying a name of its own length is a call to `memmove`); and the topics' partitions
/// numbered one after another across the group.
#[derive(Debug, Clone)]
pub struct TopicSlots {
    /// Each name's first slot.
    slots: Vec<[u8; SLOT]>,
    /// The slots after the first of names over 30 bytes, and where each name's are in it.
    rest: Vec<[u8; SLOT]>,
    rest_at: Vec<u32>,
    /// Each name's encoded length (its two-byte length and its bytes).
    len: Vec<u8>,
    starts: Vec<u32>,
    longest: usize,
}

impl TopicSlots {
    /// The topics in the order their partitions are numbered, each with its partition count;
    /// `None` when a name is longer than a Kafka topic's can be (249 bytes) or there are 2^32
    /// partitions or more.
    pub fn new<'n>(topics: impl IntoIterator<Item = (&'n str, u32)>) -> Option<Self> {
        let (mut slots, mut len, mut starts) = (Vec::new(), Vec::new(), vec![0u32]);
        let (mut rest, mut rest_at) = (Vec::new(), Vec::new());
        let mut total = 0u32;
        for (name, partitions) in topics {
            if name.len() > TOPIC_NAME_MAX {
                return None;
            }
            let mut encoded = [0u8; TOPIC_NAME_MAX + 2 + SLOT];
            encoded[..2].copy_from_slice(&(name.len() as u16).to_be_bytes());
            encoded[2..2 + name.len()].copy_from_slice(name.as_bytes());
            let mut chunks = encoded.chunks_exact(SLOT).map(<[u8; SLOT]>::try_from);
            slots.push(chunks.next()?.ok()?);
            rest_at.push(u32::try_from(rest.len()).ok()?);
            for chunk in chunks.take((2 + name.len()).div_ceil(SLOT) - 1) {
                rest.push(chunk.ok()?);
            }
            len.push(2 + name.len() as u8);
            total = total.checked_add(partitions)?;
            starts.push(total);
        }
        let longest = len.iter().copied().max().map_or(0, usize::from);
        Some(Self {
            slots,
            rest,
            rest_at,
            len,
            starts,
            longest,
        })
    }

    /// Bytes [`AssignmentWriter::global_partitions`] zeroes past the buffer's end for an
    /// assignment of `partitions` before cutting back to what it wrote: a caller writing many
    /// assignments into one buffer reserves this beyond the last (growing would copy them all).
    pub fn room(&self, partitions: usize) -> usize {
        partitions
            .saturating_mul(self.longest + 8)
            .saturating_add(SLOT)
    }
}

/// Encodes an assignment straight from its parts, topic by topic, without building a
/// [`ConsumerProtocolAssignment`]: a group leader encodes every member's share of a million
/// partitions, and the message's intermediate vectors (one per topic per member) cost more than
/// the bytes. Versions 0 to 3 share one layout (the versions differ only in the subscription),
/// so the writer serves all of them; the result is byte-identical to [`encode_assignment`].
#[derive(Debug)]
pub struct AssignmentWriter {
    // A `Vec` rather than a `BytesMut`: its `extend_from_slice` is a capacity check and a
    // copy, where `BytesMut::put_slice` is an out-of-line call, and a leader writes a million
    // small fields.
    buf: Vec<u8>,
    /// Where this assignment starts in `buf` (after what an earlier writer left there).
    start: usize,
    topics: usize,
}

impl AssignmentWriter {
    /// Starts an assignment blob; `capacity` is a hint in bytes.
    pub fn new(version: i16, capacity: usize) -> Result<Self, EncodeError> {
        Self::append_to(Vec::with_capacity(capacity.max(16)), version)
    }

    /// Starts an assignment at the end of `buf`, after what is already there: a leader writes
    /// every member's assignment into one buffer (one allocation instead of one per member)
    /// and hands each member a slice of it ([`AssignmentWriter::finish_into`]).
    pub fn append_to(mut buf: Vec<u8>, version: i16) -> Result<Self, EncodeError> {
        if !(ConsumerProtocolAssignment::VERSIONS.min..=ConsumerProtocolAssignment::VERSIONS.max)
            .contains(&version)
        {
            return Err(EncodeError::UnsupportedVersion {
                message: "ConsumerProtocolAssignment",
                version,
            });
        }
        let start = buf.len();
        buf.extend_from_slice(&version.to_be_bytes());
        // The topic count, patched by `finish`.
        buf.extend_from_slice(&0i32.to_be_bytes());
        Ok(Self {
            buf,
            start,
            topics: 0,
        })
    }

    /// Appends one topic and its partitions.
    pub fn topic(
        &mut self,
        name: &str,
        partitions: impl ExactSizeIterator<Item = i32>,
    ) -> Result<(), EncodeError> {
        put_string(&mut self.buf, name, false)?;
        self.partitions(partitions)
    }

    /// Appends one topic whose name is already encoded as a STRING (i16 length, then the
    /// bytes), as a caller writing many assignments of the same topics keeps them: the bytes
    /// are copied as they are.
    #[inline]
    pub fn encoded_topic(
        &mut self,
        encoded_name: &[u8],
        partitions: impl ExactSizeIterator<Item = i32>,
    ) -> Result<(), EncodeError> {
        self.buf.extend_from_slice(encoded_name);
        self.partitions(partitions)
    }

    /// Appends a whole assignment given as global partition numbers of `topics` (ascending):
    /// what [`AssignmentWriter::encoded_topic`] gives for each run of one topic's partitions.
    ///
    /// A group leader numbers partitions this way and writes 2,000 members' million topic
    /// entries: here they go through a slice of zeroed room with the write position in a
    /// register, where bytes written through a `Vec`'s own pointer could alias its length as
    /// far as the compiler knows, which it then reloads and stores around every field.
    pub fn global_partitions(
        &mut self,
        topics: &TopicSlots,
        global: &[u32],
    ) -> Result<(), EncodeError> {
        let TopicSlots {
            slots,
            rest,
            rest_at,
            len,
            starts,
            ..
        } = topics;
        if global.len() > i32::MAX as usize {
            return Err(EncodeError::TooLong {
                what: "array",
                length: global.len(),
            });
        }
        let base = self.buf.len();
        // Each run costs its name, its count and four bytes a partition, at most the longest
        // name and eight bytes a partition; and a name's last slot is copied whole (up to 31
        // bytes past the name) before the position moves past the name only.
        self.buf.resize(base + topics.room(global.len()), 0);
        let out = &mut self.buf[base..];
        let (mut at, mut i, mut t, mut count) = (0, 0, 0, self.topics);
        while let Some(&g) = global.get(i) {
            while t + 1 < slots.len() && starts[t + 1] <= g {
                t += 1;
            }
            let (Some(&start), Some(&end)) = (starts.get(t), starts.get(t + 1)) else {
                break;
            };
            if g < start || g >= end {
                break;
            }
            let n = usize::from(len[t]);
            out[at..at + SLOT].copy_from_slice(&slots[t]);
            if n > SLOT {
                let more = &rest[rest_at[t] as usize..][..n.div_ceil(SLOT) - 1];
                for (k, slot) in more.iter().enumerate() {
                    out[at + (k + 1) * SLOT..at + (k + 2) * SLOT].copy_from_slice(slot);
                }
            }
            at += n;
            if global.get(i + 1).is_none_or(|&n| n >= end || n <= g) {
                // One partition of this topic, as most members of a large group hold: its
                // count (1) and number in one store.
                out[at..at + 8].copy_from_slice(&(1 << 32 | u64::from(g - start)).to_be_bytes());
                at += 8;
                count += 1;
                i += 1;
                continue;
            }
            // Ascending: a number below the last ends the run, and the next one fails.
            let mut j = i + 1;
            while j < global.len() && global[j] < end && global[j] > global[j - 1] {
                j += 1;
            }
            out[at..at + 4].copy_from_slice(&((j - i) as i32).to_be_bytes());
            at += 4;
            for &p in &global[i..j] {
                out[at..at + 4].copy_from_slice(&(p - start).to_be_bytes());
                at += 4;
            }
            count += 1;
            i = j;
        }
        if i < global.len() {
            self.buf.truncate(base);
            return Err(EncodeError::Inconsistent {
                what: "global partition numbers",
            });
        }
        self.topics = count;
        self.buf.truncate(base + at);
        Ok(())
    }

    #[inline]
    fn partitions(
        &mut self,
        partitions: impl ExactSizeIterator<Item = i32>,
    ) -> Result<(), EncodeError> {
        put_array_len(&mut self.buf, partitions.len(), false)?;
        self.buf.reserve(partitions.len() * 4);
        for p in partitions {
            self.buf.extend_from_slice(&p.to_be_bytes());
        }
        self.topics += 1;
        Ok(())
    }

    /// Ends with the user data and returns the blob.
    pub fn finish(self, user_data: Option<&[u8]>) -> Result<Bytes, EncodeError> {
        let start = self.start;
        let mut all = Bytes::from(self.finish_into(user_data)?);
        Ok(if start == 0 {
            all
        } else {
            all.split_off(start)
        })
    }

    /// Ends with the user data and gives the buffer back, this assignment at its end (from
    /// the length it had when [`AssignmentWriter::append_to`] got it).
    pub fn finish_into(mut self, user_data: Option<&[u8]>) -> Result<Vec<u8>, EncodeError> {
        let topics = i32::try_from(self.topics).map_err(|_| EncodeError::TooLong {
            what: "array",
            length: self.topics,
        })?;
        self.buf[self.start + 2..self.start + 6].copy_from_slice(&topics.to_be_bytes());
        put_nullable_bytes(&mut self.buf, user_data, false)?;
        Ok(self.buf)
    }
}

/// Decodes an assignment; returns the announced version and the assignment. An empty blob is an
/// empty assignment (brokers send one to members that got nothing).
pub fn decode_assignment(bytes: Bytes) -> Result<(i16, ConsumerProtocolAssignment), DecodeError> {
    if bytes.is_empty() {
        return Ok((0, ConsumerProtocolAssignment::default()));
    }
    decode_prefixed(bytes, "consumer assignment")
}

/// User data of Kafka's `sticky` assignor: the member's previous assignment and, from v1
/// (KIP-341), the generation it was made in. No version prefix: readers try v1, then v0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StickyUserData {
    /// Previous assignment, topic by topic.
    pub previous_assignment: Vec<(StrBytes, Vec<i32>)>,
    /// Generation of the previous assignment; `None` in v0 user data.
    pub generation: Option<i32>,
}

impl StickyUserData {
    /// Encodes as v1 when a generation is set, else v0.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        put_array_len(&mut buf, self.previous_assignment.len(), false)?;
        for (topic, partitions) in &self.previous_assignment {
            put_string(&mut buf, topic, false)?;
            put_array_len(&mut buf, partitions.len(), false)?;
            for p in partitions {
                buf.put_i32(*p);
            }
        }
        if let Some(g) = self.generation {
            buf.put_i32(g);
        }
        Ok(buf.freeze())
    }

    fn decode_v0(buf: &mut Bytes) -> Result<Vec<(StrBytes, Vec<i32>)>, DecodeError> {
        let n = get_array_len(buf, false, 6, "previous_assignment", 0)?;
        let mut out = Vec::with_capacity(initial_capacity(n));
        for _ in 0..n {
            let topic = get_string(buf, false, "topic", 0)?;
            let np = get_array_len(buf, false, 4, "partitions", 0)?;
            let mut ps = Vec::with_capacity(initial_capacity(np));
            for _ in 0..np {
                ps.push(get_i32(buf)?);
            }
            out.push((topic, ps));
        }
        Ok(out)
    }

    /// Decodes user data: v1, else v0 (generation `None`). Unparsable user data decodes as "no
    /// previous assignment" at [`DEFAULT_GENERATION`], as Kafka's Java `StickyAssignor` does, so
    /// that one foreign member cannot stop the group from being assigned. Returns `None` only for
    /// absent or empty user data.
    pub fn decode(user_data: Option<&Bytes>) -> Option<Self> {
        let bytes = user_data.filter(|b| !b.is_empty())?;
        let mut buf = bytes.clone();
        if let Ok(previous) = Self::decode_v0(&mut buf) {
            if buf.len() >= 4 {
                let generation = buf.get_i32();
                return Some(Self {
                    previous_assignment: previous,
                    generation: Some(generation),
                });
            }
            return Some(Self {
                previous_assignment: previous,
                generation: None,
            });
        }
        Some(Self {
            previous_assignment: Vec::new(),
            generation: Some(DEFAULT_GENERATION),
        })
    }
}

/// User data of Kafka's `cooperative-sticky` assignor: the generation only (an `int32`). From
/// subscription v2 the generation is a field of the subscription itself (KIP-792) and this is
/// redundant, but Java members still send it.
pub fn encode_cooperative_user_data(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// Reads cooperative-sticky user data; [`DEFAULT_GENERATION`] when it cannot be parsed, `None`
/// when absent (Java `CooperativeStickyAssignor.memberData`).
pub fn decode_cooperative_user_data(user_data: Option<&Bytes>) -> Option<i32> {
    let b = user_data?;
    if b.len() < 4 {
        return Some(DEFAULT_GENERATION);
    }
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;

    fn sub() -> ConsumerProtocolSubscription {
        ConsumerProtocolSubscription {
            topics: vec!["a".into(), "b".into()].into(),
            user_data: Some(Bytes::from_static(b"ud")),
            owned_partitions: vec![OwnedTopicPartitions {
                topic: "a".into(),
                partitions: vec![0, 2],
            }],
            generation_id: 7,
            rack_id: Some("rack-1".into()),
        }
    }

    #[test]
    fn assignments_written_one_after_another_read_back_alone() {
        let a = ConsumerProtocolAssignment {
            assigned_partitions: vec![
                AssignedTopicPartitions {
                    topic: "t".into(),
                    partitions: vec![0, 2],
                },
                AssignedTopicPartitions {
                    topic: "u".into(),
                    partitions: vec![70_000],
                },
            ],
            user_data: Some(Bytes::from_static(b"u")),
        };
        let mut w = AssignmentWriter::append_to(b"earlier".to_vec(), 1).unwrap();
        w.topic("t", [0, 2].into_iter()).unwrap();
        w.topic("u", [70_000].into_iter()).unwrap();
        let buf = w.finish_into(Some(b"u")).unwrap();
        let expected = encode_assignment(&a, 1).unwrap();
        assert_eq!(&buf[..7], b"earlier");
        assert_eq!(&buf[7..], &expected[..]);
        let mut w = AssignmentWriter::append_to(buf, 1).unwrap();
        w.encoded_topic(b"\0\x01t", [0, 2].into_iter()).unwrap();
        w.encoded_topic(b"\0\x01u", [70_000].into_iter()).unwrap();
        assert_eq!(w.finish(Some(b"u")).unwrap(), expected);
        assert!(AssignmentWriter::append_to(Vec::new(), 4).is_err());
        // The same from global partition numbers ("t" numbers 0 to 2, "u" from 3).
        let slots = TopicSlots::new([("t", 3), ("u", 80_000)]).unwrap();
        let mut w = AssignmentWriter::append_to(b"earlier".to_vec(), 1).unwrap();
        w.global_partitions(&slots, &[0, 2, 70_003]).unwrap();
        let buf = w.finish_into(Some(b"u")).unwrap();
        assert_eq!(&buf[7..], &expected[..]);
    }

    proptest::proptest! {
        /// Written from global numbers as topic by topic, for any names (in a slot, empty to
        /// 30 bytes, or several, up to Kafka's longest, mixed), any runs (one partition or
        /// many) and after another assignment.
        #[test]
        fn global_partitions_write_what_topic_by_topic_writes(
            topics in proptest::collection::vec(
                (proptest::prop_oneof![3 => 0usize..=40, 1 => 41usize..=249], 1u32..6),
                1..8,
            ),
            picks in proptest::collection::vec(proptest::bool::ANY, 0..48),
            earlier in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let names: Vec<String> =
                topics.iter().enumerate().map(|(i, &(n, _))| format!("{i}").repeat(n)).collect();
            let slots = TopicSlots::new(names.iter().map(String::as_str).zip(topics.iter().map(|t| t.1)))
                .unwrap();
            let total: u32 = topics.iter().map(|t| t.1).sum();
            let global: Vec<u32> = (0..total).filter(|&g| picks.get(g as usize) == Some(&true)).collect();
            let mut w = AssignmentWriter::append_to(earlier.clone(), 3).unwrap();
            w.global_partitions(&slots, &global).unwrap();
            let got = w.finish_into(None).unwrap();
            let mut w = AssignmentWriter::append_to(earlier.clone(), 3).unwrap();
            let mut start = 0;
            for (name, &(_, n)) in names.iter().zip(&topics) {
                let mine: Vec<i32> = global
                    .iter()
                    .filter(|&&g| (start..start + n).contains(&g))
                    .map(|&g| (g - start) as i32)
                    .collect();
                if !mine.is_empty() {
                    w.topic(name, mine.into_iter()).unwrap();
                }
                start += n;
            }
            proptest::prop_assert_eq!(got, w.finish_into(None).unwrap());
        }
    }

    /// Numbers out of order or past the last topic are an error that leaves the buffer as it
    /// was, and names longer than Kafka allows give no slots.
    #[test]
    fn global_partitions_reject_what_they_cannot_write() {
        let slots = TopicSlots::new([("t", 3), ("u", 2)]).unwrap();
        for bad in [&[3, 1][..], &[5], &[0, 7]] {
            let mut w = AssignmentWriter::append_to(b"x".to_vec(), 0).unwrap();
            assert!(matches!(
                w.global_partitions(&slots, bad),
                Err(EncodeError::Inconsistent { .. })
            ));
            assert_eq!(
                w.finish_into(None).unwrap(),
                b"x\0\0\0\0\0\0\xff\xff\xff\xff"
            );
        }
        assert!(TopicSlots::new([("t".repeat(249).as_str(), 1)]).is_some());
        assert!(TopicSlots::new([("t".repeat(250).as_str(), 1)]).is_none());
        assert!(TopicSlots::new([("t", u32::MAX), ("u", 1)]).is_none());
    }

    /// One member's metadata for the decoder comparison: a topic list from a small pool (so
    /// members repeat one another), any version from 0 to one newer than known, and sometimes
    /// bytes cut short, altered or written in kafka-go's layout.
    fn member_metadata() -> impl proptest::strategy::Strategy<Value = Bytes> {
        use proptest::prelude::*;
        (
            0usize..3,
            0i16..=4,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
            proptest::collection::vec((0usize..3, proptest::collection::vec(0i32..9, 0..4)), 0..3),
            -1i32..4,
            proptest::option::of("[a-c]{0,3}"),
            0u8..8,
            any::<u16>(),
        )
            .prop_map(|(pool, version, ud, owned, generation, rack, damage, at)| {
                let pools: [&[&str]; 3] = [&["a", "b"], &["a", "b", "c"], &[]];
                let s = ConsumerProtocolSubscription {
                    topics: pools[pool].iter().map(|&t| t.into()).collect(),
                    user_data: ud.map(Bytes::from),
                    owned_partitions: owned
                        .into_iter()
                        .map(|(t, partitions)| OwnedTopicPartitions {
                            topic: ["a", "b", "x"][t].into(),
                            partitions,
                        })
                        .collect(),
                    generation_id: generation,
                    rack_id: rack.map(Into::into),
                };
                let mut b = BytesMut::new();
                b.put_i16(version);
                s.encode(&mut b, version.min(3)).unwrap();
                if version == 4 {
                    b.put_slice(b"newer");
                }
                let mut b = b.to_vec();
                let at = usize::from(at) % (b.len() + 1);
                match damage {
                    0 => b.truncate(at),
                    1 if at < b.len() => b[at] ^= 0x40,
                    2 => {
                        // kafka-go: the version-0 layout under a version-1 prefix.
                        let mut k = BytesMut::new();
                        k.put_i16(1);
                        s.encode(&mut k, 0).unwrap();
                        b = k.to_vec();
                    }
                    _ => {}
                }
                Bytes::from(b)
            })
    }

    proptest::proptest! {
        #[test]
        fn the_group_decoder_reads_every_member_as_decode_subscription_does(
            members in proptest::collection::vec(member_metadata(), 1..12)
        ) {
            let mut d = SubscriptionDecoder::default();
            for m in members {
                let one = decode_subscription(m.clone());
                let group = d.decode(m);
                proptest::prop_assert_eq!(one.as_ref().ok(), group.as_ref().ok());
                proptest::prop_assert_eq!(one.is_err(), group.is_err());
            }
        }
    }

    #[test]
    fn the_group_decoder_shares_a_repeated_topic_list() {
        let s = sub();
        let m = encode_subscription(&s, 3).unwrap();
        let mut d = SubscriptionDecoder::default();
        let (_, first) = d.decode(m.clone()).unwrap();
        let mut other = s.clone();
        other.generation_id = 9;
        other.owned_partitions.clear();
        let (v, second) = d.decode(encode_subscription(&other, 3).unwrap()).unwrap();
        assert_eq!((v, &second), (3, &other));
        // The list is the first member's, not read from the second's metadata again.
        assert!(Arc::ptr_eq(&first.topics, &second.topics));
        // The fast path reads the layout of versions 0-3 only: a newer version of the message
        // needs `decode_after_topics` and the prefix length reviewed.
        assert_eq!(ConsumerProtocolSubscription::VERSIONS.max, 3);
    }

    #[test]
    fn kafka_go_version_one_without_owned_partitions_reads_as_version_zero() {
        // What segmentio/kafka-go sends: the version-0 layout under a version-1 prefix.
        let v0 = ConsumerProtocolSubscription {
            topics: vec!["orders".into()].into(),
            user_data: Some(Bytes::new()),
            ..Default::default()
        };
        let mut b = BytesMut::new();
        b.put_i16(1);
        v0.encode(&mut b, 0).unwrap();
        let (version, got) = decode_subscription(b.freeze()).expect("read as v0");
        assert_eq!(version, 0);
        assert_eq!(got.topics, v0.topics);
        // Bytes no layout reads whole stay an error.
        let mut bad = BytesMut::new();
        bad.put_i16(1);
        bad.put_slice(&[0, 0, 0, 9]);
        assert!(decode_subscription(bad.freeze()).is_err());
    }

    #[test]
    fn subscription_round_trips_with_prefix() {
        let s = sub();
        let bytes = encode_subscription(&s, 3).unwrap();
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(decode_subscription(bytes).unwrap(), (3, s));
    }

    #[test]
    fn newer_versions_are_read_with_the_newest_known_format() {
        // A v7 subscription from a future client: v3 fields followed by fields we do not know.
        let mut b = BytesMut::new();
        b.put_i16(7);
        sub().encode(&mut b, 3).unwrap();
        b.put_slice(b"future fields");
        let (v, s) = decode_subscription(b.freeze()).unwrap();
        assert_eq!(v, 7);
        assert_eq!(s, sub());
    }

    #[test]
    fn negative_version_is_rejected() {
        assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn empty_assignment_blob_is_empty_assignment() {
        assert_eq!(
            decode_assignment(Bytes::new()).unwrap().1,
            ConsumerProtocolAssignment::default()
        );
    }

    #[test]
    fn sticky_user_data_v0_v1_and_garbage() {
        let v1 = StickyUserData {
            previous_assignment: vec![("t".into(), vec![1, 3])],
            generation: Some(4),
        };
        let b = v1.encode().unwrap();
        assert_eq!(StickyUserData::decode(Some(&b)), Some(v1.clone()));
        let v0 = StickyUserData {
            generation: None,
            ..v1
        };
        let b = v0.encode().unwrap();
        assert_eq!(StickyUserData::decode(Some(&b)), Some(v0));
        let garbage = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1]);
        assert_eq!(
            StickyUserData::decode(Some(&garbage)),
            Some(StickyUserData {
                previous_assignment: vec![],
                generation: Some(DEFAULT_GENERATION)
            })
        );
        assert_eq!(StickyUserData::decode(None), None);
    }

    #[test]
    fn cooperative_user_data() {
        assert_eq!(
            decode_cooperative_user_data(Some(&encode_cooperative_user_data(9))),
            Some(9)
        );
        assert_eq!(
            decode_cooperative_user_data(Some(&Bytes::from_static(b"x"))),
            Some(-1)
        );
        assert_eq!(decode_cooperative_user_data(None), None);
    }
}
