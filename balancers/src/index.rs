//! Turns members and topics into the indexed form the sticky engine works on: members in Java
//! order, members grouped into subscription classes (identical topic sets), and claimed
//! partitions as global numbers.
//!
//! Large groups repeat the same subscription on every member and list owned partitions in
//! subscription order, so each member's topic list is first compared with the previous class's
//! list and each owned topic with the next expected name; hash lookups are the fallback.

use std::collections::BTreeSet;
use std::sync::Arc;

use cohort_protocol::StrBytes;
use rustc_hash::FxHashMap;

use crate::java::member_order;
use crate::plan::TopicTable;
use crate::{AssignError, GroupMember, TopicInfo};

/// Members, classes and topics, indexed.
pub(crate) struct Indexed {
    pub(crate) table: Arc<TopicTable>,
    /// Member positions (into the input) in Java's order.
    pub(crate) order: Vec<u32>,
    /// Class of each member, by input position.
    pub(crate) member_class: Vec<u32>,
    /// Topics of each class, ascending topic index.
    pub(crate) classes: Vec<Vec<u32>>,
    /// Per class, a bitset over topics.
    class_bits: Vec<Vec<u64>>,
    /// Rack id of each member (by input position) in the table's rack numbering.
    pub(crate) member_rack: Vec<Option<u32>>,
    pub(crate) warnings: Vec<String>,
}

impl Indexed {
    pub(crate) fn new(members: &[GroupMember], topics: &[TopicInfo]) -> Result<Self, AssignError> {
        if members.len() >= u32::MAX as usize / 2 {
            return Err(AssignError::TooLarge(format!("{} members", members.len())));
        }
        let table = Arc::new(TopicTable::new(topics)?);
        let order = member_order(members)?;

        let words = table.len().div_ceil(64);
        let mut classes: Vec<Vec<u32>> = Vec::new();
        let mut class_bits: Vec<Vec<u64>> = Vec::new();
        let mut by_topics: FxHashMap<Vec<u32>, u32> = FxHashMap::default();
        let mut member_class = vec![0u32; members.len()];
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        // The raw topic list of the last member, and its class: most groups repeat it verbatim.
        let mut last: Option<(&[StrBytes], u32)> = None;
        // Classes are numbered in Java member order, so that the plan does not depend on the
        // order members were listed in.
        for &i in &order {
            let i = i as usize;
            let m = &members[i];
            let raw = &m.subscription.topics[..];
            // The same list (shared by the leader's decoding) is the same class without
            // comparing its names.
            if let Some((prev, c)) = last
                && (std::ptr::eq(prev, raw) || prev == raw)
            {
                member_class[i] = c;
                // The next member is compared with this one's list: members decoded on
                // another thread share another copy of the same list.
                last = Some((raw, c));
                continue;
            }
            let mut ts: Vec<u32> = Vec::with_capacity(raw.len());
            for name in raw {
                match table.index(name) {
                    Some(t) => ts.push(t),
                    None => {
                        unknown.insert(name.to_string());
                    }
                }
            }
            ts.sort_unstable();
            ts.dedup();
            let c = match by_topics.get(&ts) {
                Some(&c) => c,
                None => {
                    let c = classes.len() as u32;
                    let mut bits = vec![0u64; words];
                    for &t in &ts {
                        bits[t as usize / 64] |= 1 << (t % 64);
                    }
                    class_bits.push(bits);
                    classes.push(ts.clone());
                    by_topics.insert(ts, c);
                    c
                }
            };
            member_class[i] = c;
            last = Some((raw, c));
        }
        let mut warnings: Vec<String> = unknown
            .into_iter()
            .map(|t| {
                format!("topic {t:?} is subscribed to but not in metadata; it is not assigned")
            })
            .collect();

        let mut member_rack = vec![None; members.len()];
        for (i, m) in members.iter().enumerate() {
            if let Some(r) = m.subscription.rack_id.as_deref().filter(|r| !r.is_empty()) {
                member_rack[i] = Some(table.racks().and_then(|rk| rk.id(r)).unwrap_or(u32::MAX));
            }
        }
        if members.iter().any(|m| m.member_id.is_empty()) {
            warnings.push("a member has an empty member id".into());
        }
        Ok(Self {
            table,
            order,
            member_class,
            classes,
            class_bits,
            member_rack,
            warnings,
        })
    }

    /// Whether class `c` subscribes to topic `t`.
    pub(crate) fn subscribes(&self, c: u32, t: u32) -> bool {
        self.class_bits[c as usize][t as usize / 64] & (1 << (t % 64)) != 0
    }

    /// Topic index of a claimed topic name, if the topic exists. `next` holds the topic after
    /// the previous claim: owned lists usually follow topic order, so that name is compared first
    /// and the hash lookup is the fallback.
    #[inline]
    pub(crate) fn claimed_topic(&self, name: &str, next: &mut u32) -> Option<u32> {
        let t = if (*next as usize) < self.table.len() && self.table.name(*next).as_str() == name {
            *next
        } else {
            self.table.index(name)?
        };
        *next = t + 1;
        Some(t)
    }

    /// Resolves one member's claimed partitions to global numbers into `out`. Partitions that
    /// do not exist are ignored rather than trusted (negative or out-of-range numbers, topics not
    /// in the metadata); partitions of a topic the member no longer subscribes to are claims all
    /// the same (Java `AbstractStickyAssignor.allSubscriptionsEqual` weighs every claim on a topic
    /// of the group): they may beat another member's older claim, but are never kept.
    pub(crate) fn claims<'a, I>(&self, member: usize, owned: I, out: &mut Claimed)
    where
        I: IntoIterator<Item = (&'a str, &'a [i32])>,
    {
        let class = self.member_class[member];
        let mut next: u32 = 0;
        for (topic, partitions) in owned {
            let Some(t) = self.claimed_topic(topic, &mut next) else {
                out.ignored += partitions.len();
                continue;
            };
            let subscribed = self.subscribes(class, t);
            for &p in partitions {
                out.push(self.table.global(t, p), subscribed);
            }
        }
    }
}

/// One member's claimed partitions as global numbers.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Partitions of topics the member subscribes to: it may keep them if its claim wins.
    pub(crate) kept: Vec<u32>,
    /// Partitions of topics of the group that the member no longer subscribes to.
    pub(crate) unsubscribed: Vec<u32>,
    /// Claims that name no partition of the group, and unsubscribed ones (both for a warning).
    pub(crate) ignored: usize,
}

impl Claimed {
    #[inline]
    pub(crate) fn push(&mut self, partition: Option<u32>, subscribed: bool) {
        match partition {
            Some(g) if subscribed => self.kept.push(g),
            Some(g) => {
                self.unsubscribed.push(g);
                self.ignored += 1;
            }
            None => self.ignored += 1,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.unsubscribed.clear();
    }
}
