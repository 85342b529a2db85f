//! Plans: who gets which partitions. Partitions are numbered globally (topic by topic, in Java's
//! topic order) so that a plan for a million partitions is a few flat vectors, not a million
//! small maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cohort_protocol::EncodeError;
use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::{
    AssignedTopicPartitions, AssignmentWriter, ConsumerProtocolAssignment, TopicSlots,
};
use rustc_hash::FxHashMap;

use crate::java::java_cmp;
use crate::{AssignError, GroupMember, TopicInfo};

/// The topics of a group in Java's order, with a global number for every partition.
#[derive(Debug, Clone)]
pub struct TopicTable {
    names: Vec<StrBytes>,
    /// Every name as the consumer protocol writes it, for `AssignmentWriter::global_partitions`
    /// (`None` when a name is longer than a Kafka topic's can be, or partitions too many to
    /// number: encoding then goes name by name). Encoding 2,000 assignments reads every name
    /// 2,000 times: from here they stay in cache, where the names themselves lie scattered
    /// through the Metadata response.
    slots: Option<TopicSlots>,
    /// Mean topic name length, rounded up: sizes encoding buffers.
    name_len: usize,
    starts: Vec<u32>,
    lookup: FxHashMap<StrBytes, u32>,
    racks: Option<Racks>,
}

/// Replica racks of every partition, as rack numbers (compressed rows).
#[derive(Debug, Clone)]
pub(crate) struct Racks {
    pub(crate) names: Vec<StrBytes>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) ids: Vec<u32>,
}

impl Racks {
    pub(crate) fn of(&self, global: u32) -> &[u32] {
        let g = global as usize;
        &self.ids[self.offsets[g] as usize..self.offsets[g + 1] as usize]
    }

    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .position(|n| n.as_str() == name)
            .map(|i| i as u32)
    }
}

impl TopicTable {
    /// Builds the table; topics are sorted as Java sorts strings, duplicates keep the first.
    pub fn new(topics: &[TopicInfo]) -> Result<Self, AssignError> {
        let mut order: Vec<&TopicInfo> = topics.iter().collect();
        order.sort_by(|a, b| java_cmp(&a.name, &b.name));
        order.dedup_by(|b, a| a.name == b.name);
        let mut names = Vec::with_capacity(order.len());
        let mut starts = Vec::with_capacity(order.len() + 1);
        let mut lookup = FxHashMap::with_capacity_and_hasher(order.len(), Default::default());
        let mut total: u64 = 0;
        for (i, t) in order.iter().enumerate() {
            starts.push(total as u32);
            names.push(t.name.clone());
            lookup.insert(t.name.clone(), i as u32);
            total += u64::from(t.partitions);
            if total > u64::from(u32::MAX - 1) {
                return Err(AssignError::TooLarge(format!("{total} partitions")));
            }
        }
        starts.push(total as u32);
        let racks = if order.iter().any(|t| !t.replica_racks.is_empty()) {
            let mut rack_names: Vec<StrBytes> = Vec::new();
            let mut rack_ids: FxHashMap<StrBytes, u32> = FxHashMap::default();
            let mut offsets = Vec::with_capacity(total as usize + 1);
            let mut ids = Vec::new();
            for t in &order {
                for p in 0..t.partitions as usize {
                    offsets.push(ids.len() as u32);
                    if let Some(rs) = t.replica_racks.get(p) {
                        let mut these: Vec<u32> = rs
                            .iter()
                            .map(|r| {
                                *rack_ids.entry(r.clone()).or_insert_with(|| {
                                    rack_names.push(r.clone());
                                    rack_names.len() as u32 - 1
                                })
                            })
                            .collect();
                        these.sort_unstable();
                        these.dedup();
                        ids.extend(these);
                    }
                }
            }
            offsets.push(ids.len() as u32);
            Some(Racks {
                names: rack_names,
                offsets,
                ids,
            })
        } else {
            None
        };
        let name_len = names
            .iter()
            .map(|n| n.len())
            .sum::<usize>()
            .div_ceil(names.len().max(1));
        let slots = TopicSlots::new(
            names
                .iter()
                .zip(starts.windows(2))
                .map(|(n, w)| (n.as_str(), w[1] - w[0])),
        );
        Ok(Self {
            names,
            slots,
            name_len,
            starts,
            lookup,
            racks,
        })
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no topics.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of partitions.
    pub fn partitions(&self) -> u32 {
        *self.starts.last().unwrap_or(&0)
    }

    /// Name of topic `t`.
    pub fn name(&self, t: u32) -> &StrBytes {
        &self.names[t as usize]
    }

    /// Index of a topic by name.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.lookup.get(name).copied()
    }

    /// Global numbers of topic `t`'s partitions.
    pub fn range(&self, t: u32) -> std::ops::Range<u32> {
        self.starts[t as usize]..self.starts[t as usize + 1]
    }

    /// Global number of partition `p` of topic `t`, if it exists.
    pub fn global(&self, t: u32, p: i32) -> Option<u32> {
        let r = self.range(t);
        let g = i64::from(r.start) + i64::from(p);
        (p >= 0 && g < i64::from(r.end)).then_some(g as u32)
    }

    /// Topic index and partition of a global number.
    pub fn locate(&self, global: u32) -> (u32, i32) {
        let t = self.starts.partition_point(|&s| s <= global) - 1;
        (t as u32, (global - self.starts[t]) as i32)
    }

    pub(crate) fn racks(&self) -> Option<&Racks> {
        self.racks.as_ref()
    }

    /// Index of every topic start, for walking sorted global numbers topic by topic.
    pub(crate) fn starts(&self) -> &[u32] {
        &self.starts
    }
}

/// One member's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlan {
    /// The member.
    pub member_id: StrBytes,
    /// Assigned partitions as global numbers, ascending.
    pub partitions: Vec<u32>,
    /// User data for the member's assignment.
    pub user_data: Option<Bytes>,
}

/// The result of a balancer: one entry per member, in the order the members were given.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) table: Arc<TopicTable>,
    /// Per member, in input order.
    pub members: Vec<MemberPlan>,
    /// Things the balancer ignored, as Kafka's Java client does (unknown topics, invalid owned
    /// partitions, unparsable user data), for logs.
    pub warnings: Vec<String>,
}

impl Plan {
    /// A plan without user data: `partitions[i]` (global numbers, ascending) for `members[i]`.
    pub(crate) fn new(
        members: &[GroupMember],
        partitions: Vec<Vec<u32>>,
        table: Arc<TopicTable>,
        warnings: Vec<String>,
    ) -> Self {
        let members = members
            .iter()
            .zip(partitions)
            .map(|(m, partitions)| MemberPlan {
                member_id: m.member_id.clone(),
                partitions,
                user_data: None,
            })
            .collect();
        Self {
            table,
            members,
            warnings,
        }
    }

    /// A plan made elsewhere (another client's assignor, a file), in the form of
    /// [`Plan::to_map`], so [`crate::metrics::measure`] can judge it beside ours. Members missing
    /// from the map get nothing; a member, topic or partition the group does not have, or a
    /// partition given twice, is an error.
    pub fn from_map(
        members: &[GroupMember],
        topics: &[TopicInfo],
        map: &BTreeMap<String, BTreeMap<String, Vec<i32>>>,
    ) -> Result<Self, AssignError> {
        let table = Arc::new(TopicTable::new(topics)?);
        let invalid = |what: String| AssignError::InvalidPlan(what);
        if let Some(id) = map
            .keys()
            .find(|id| !members.iter().any(|m| m.member_id.as_str() == id.as_str()))
        {
            return Err(invalid(format!("no member {id:?} in the group")));
        }
        let mut given = vec![false; table.partitions() as usize];
        let mut partitions = Vec::with_capacity(members.len());
        for m in members {
            let mut mine = Vec::new();
            for (topic, ps) in map.get(m.member_id.as_str()).into_iter().flatten() {
                let t = table
                    .index(topic)
                    .ok_or_else(|| invalid(format!("no topic {topic:?}")))?;
                if !ps.is_empty() && !m.subscription.topics.iter().any(|s| s.as_str() == topic) {
                    return Err(invalid(format!(
                        "{} gets {topic}-{} but does not subscribe to {topic}",
                        m.member_id.as_str(),
                        ps[0]
                    )));
                }
                for &p in ps {
                    let g = table
                        .global(t, p)
                        .ok_or_else(|| invalid(format!("no partition {topic}-{p}")))?;
                    if std::mem::replace(&mut given[g as usize], true) {
                        return Err(invalid(format!("{topic}-{p} is given twice")));
                    }
                    mine.push(g);
                }
            }
            mine.sort_unstable();
            partitions.push(mine);
        }
        Ok(Self::new(members, partitions, table, Vec::new()))
    }

    /// The topic table the global numbers refer to.
    pub fn table(&self) -> &TopicTable {
        &self.table
    }

    /// Position of a member in the plan.
    pub fn member_index(&self, member_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.member_id.as_str() == member_id)
    }

    /// A member's partitions, topic by topic (topics in Java order, partitions ascending).
    pub fn topics_of(&self, member: usize) -> Vec<(StrBytes, Vec<i32>)> {
        let mut out: Vec<(StrBytes, Vec<i32>)> = Vec::new();
        let starts = self.table.starts();
        let mut t = 0usize;
        for &g in &self.members[member].partitions {
            while starts[t + 1] <= g {
                t += 1;
            }
            let p = (g - starts[t]) as i32;
            match out.last_mut() {
                Some((name, ps)) if name == self.table.name(t as u32) => ps.push(p),
                _ => out.push((self.table.name(t as u32).clone(), vec![p])),
            }
        }
        out
    }

    /// A member's partitions of one topic.
    pub fn partitions_of(&self, member: usize, topic: &str) -> Vec<i32> {
        let Some(t) = self.table.index(topic) else {
            return Vec::new();
        };
        let r = self.table.range(t);
        let ps = &self.members[member].partitions;
        let lo = ps.partition_point(|&g| g < r.start);
        let hi = ps.partition_point(|&g| g < r.end);
        ps[lo..hi].iter().map(|g| (g - r.start) as i32).collect()
    }

    /// A member's assignment encoded for SyncGroup (version-prefixed), written straight from the
    /// plan: byte-identical to encoding [`Plan::to_assignment`], without its per-topic vectors.
    pub fn encode_assignment(&self, member: usize, version: i16) -> Result<Bytes, EncodeError> {
        let mut w = AssignmentWriter::new(version, self.encoded_bound(member))?;
        self.write_topics(&mut w, member)?;
        w.finish(self.members[member].user_data.as_deref())
    }

    /// Every member's assignment, as [`Plan::encode_assignment`] gives each, written into one
    /// buffer that the results share: one allocation for the whole group where a leader of
    /// thousands of members made one per member (and the allocator's churn of them cost as
    /// much as the writing).
    pub fn encode_assignments(&self, version: i16) -> Result<Vec<Bytes>, EncodeError> {
        self.encode_assignments_of(0..self.members.len(), version)
    }

    /// As [`Plan::encode_assignments`] for some of the members, in order: a leader writes a
    /// large group's in parts on several threads.
    pub fn encode_assignments_of(
        &self,
        members: std::ops::Range<usize>,
        version: i16,
    ) -> Result<Vec<Bytes>, EncodeError> {
        let members = members.start.min(self.members.len())..members.end.min(self.members.len());
        // The last member's writer zeroes room before cutting back to what it wrote
        // (`TopicSlots::room`): reserved too, as growing the buffer would copy the group's.
        let mine = &self.members[members.clone()];
        let room = self.table.slots.as_ref().map_or(0, |s| {
            let most = mine.iter().map(|m| m.partitions.len()).max();
            s.room(most.unwrap_or(0))
        });
        let capacity = members
            .clone()
            .map(|i| self.encoded_bound(i))
            .sum::<usize>()
            + room;
        let mut buf = Vec::with_capacity(capacity);
        let mut ends = Vec::with_capacity(mine.len());
        for (i, m) in members.zip(mine) {
            let mut w = AssignmentWriter::append_to(buf, version)?;
            self.write_topics(&mut w, i)?;
            buf = w.finish_into(m.user_data.as_deref())?;
            ends.push(buf.len());
        }
        let all = Bytes::from(buf);
        let mut start = 0;
        Ok(ends
            .into_iter()
            .map(|end| {
                let one = all.slice(start..end);
                start = end;
                one
            })
            .collect())
    }

    /// Bytes a member's encoded assignment takes at most when every topic name is of the mean
    /// length (the usual case; otherwise the buffer grows): each run of one topic's partitions
    /// costs its name and count, each partition four bytes; and the 32 bytes a name slot writes
    /// before it is cut back to the name (growing a group's buffer of megabytes for those
    /// would copy it).
    fn encoded_bound(&self, member: usize) -> usize {
        let m = &self.members[member];
        let ps = m.partitions.len();
        let topics = ps.min(self.table.len());
        42 + ps * 4
            + topics * (6 + self.table.name_len)
            + m.user_data.as_ref().map_or(0, |u| u.len())
    }

    fn write_topics(&self, w: &mut AssignmentWriter, member: usize) -> Result<(), EncodeError> {
        let ps = &self.members[member].partitions;
        let starts = self.table.starts();
        if let Some(slots) = &self.table.slots {
            return w.global_partitions(slots, ps);
        }
        let mut i = 0;
        let mut t = 0usize;
        while i < ps.len() {
            while starts[t + 1] <= ps[i] {
                t += 1;
            }
            let (start, end) = (starts[t], starts[t + 1]);
            let run = run_below(&ps[i..], end);
            let partitions = ps[i..i + run].iter().map(|&g| (g - start) as i32);
            w.topic(self.table.name(t as u32), partitions)?;
            i += run;
        }
        Ok(())
    }

    /// A member's assignment in the consumer protocol's form.
    pub fn to_assignment(&self, member: usize) -> ConsumerProtocolAssignment {
        ConsumerProtocolAssignment {
            assigned_partitions: self
                .topics_of(member)
                .into_iter()
                .map(|(topic, partitions)| AssignedTopicPartitions { topic, partitions })
                .collect(),
            user_data: self.members[member].user_data.clone(),
        }
    }

    /// The whole plan as ordered maps: member id to topic to partitions.
    pub fn to_map(&self) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
        (0..self.members.len())
            .map(|i| {
                (
                    self.members[i].member_id.to_string(),
                    self.topics_of(i)
                        .into_iter()
                        .map(|(t, ps)| (t.to_string(), ps))
                        .collect(),
                )
            })
            .collect()
    }

    /// Owner of every partition (member position), `u32::MAX` for unassigned ones.
    pub fn owners(&self) -> Vec<u32> {
        let mut owners = vec![u32::MAX; self.table.partitions() as usize];
        for (i, m) in self.members.iter().enumerate() {
            for &g in &m.partitions {
                owners[g as usize] = i as u32;
            }
        }
        owners
    }
}

/// How many of the sorted `ps` are below `end`, searched from the front: galloping, so a run
/// of one (a member with one partition of each of many topics, as a fresh plan of many
/// topics gives) costs one comparison where a binary search over the rest of the member's
/// partitions cost about ten dependent ones (most of `encode_assignment`'s time at 1M
/// partitions and 2,000 members, by `perf`).
fn run_below(ps: &[u32], end: u32) -> usize {
    if ps.first().is_none_or(|&g| g >= end) {
        return 0;
    }
    let mut hi = 1;
    while hi < ps.len() && ps[hi] < end {
        hi *= 2;
    }
    // Here ps[hi / 2] < end, and ps[hi] >= end or hi is past the end.
    let lo = hi / 2;
    let hi = hi.min(ps.len());
    lo + ps[lo..hi].partition_point(|&g| g < end)
}

#[cfg(test)]
mod tests {
    use super::run_below;
    use crate::{Balancer, GroupMember, Range, TopicInfo};

    /// A name too long for the protocol's i16 length fails the assignments that hold it, as
    /// before names were pre-encoded, and only those.
    #[test]
    fn a_topic_name_too_long_to_encode_fails_only_its_assignments() {
        let long = "t".repeat(40_000);
        let topics = [TopicInfo::new(long.as_str(), 1), TopicInfo::new("short", 1)];
        let members = [
            GroupMember::new("a", &[long.as_str()]),
            GroupMember::new("b", &["short"]),
        ];
        let plan = Range.assign(&members, &topics).unwrap();
        let of = |id: &str| {
            plan.members
                .iter()
                .position(|m| &*m.member_id == id)
                .unwrap()
        };
        assert!(plan.encode_assignment(of("a"), 0).is_err());
        let b = plan.encode_assignment(of("b"), 0).unwrap();
        assert!(b.windows(5).any(|w| w == b"short"));
    }

    /// Groups whose names all fit a 32-byte slot with their length, groups with longer ones
    /// up to Kafka's longest (both written from global numbers) and groups with a name Kafka
    /// would refuse (name by name) are written as the message encoder writes them.
    #[test]
    fn names_in_and_beyond_a_slot_encode_as_the_message_does() {
        for lens in [
            &[0, 1, 29, 30][..],
            &[1, 29, 30, 31, 32, 100, 249],
            &[3, 250],
        ] {
            same_as_the_message(lens);
        }
    }

    fn same_as_the_message(lens: &[usize]) {
        use cohort_protocol::consumer_protocol::encode_assignment;
        let names: Vec<String> = lens.iter().map(|&n| "n".repeat(n)).collect();
        let topics: Vec<TopicInfo> = names
            .iter()
            .map(|n| TopicInfo::new(n.as_str(), 3))
            .collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let members = [GroupMember::new("a", &all), GroupMember::new("b", &all)];
        let plan = crate::RoundRobin.assign(&members, &topics).unwrap();
        let written = plan.encode_assignments(3).unwrap();
        for (i, bytes) in written.iter().enumerate() {
            assert_eq!(
                *bytes,
                encode_assignment(&plan.to_assignment(i), 3).unwrap(),
                "member {i}"
            );
        }
    }

    #[test]
    fn run_below_agrees_with_a_binary_search() {
        // Every sorted vector of up to 12 distinct values below 16, every bound.
        for mask in 0u32..(1 << 16) {
            let ps: Vec<u32> = (0..16).filter(|b| mask & (1 << b) != 0).collect();
            if ps.len() > 12 {
                continue;
            }
            for end in 0..=17 {
                assert_eq!(
                    run_below(&ps, end),
                    ps.partition_point(|&g| g < end),
                    "{ps:?} below {end}"
                );
            }
        }
    }
}
