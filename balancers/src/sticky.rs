//! The `sticky` balancer (KIP-54, eager) and the driver the whole sticky family shares.

use std::sync::Arc;

use bytes::Bytes;
use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolAssignment, DEFAULT_GENERATION, StickyUserData, decode_cooperative_user_data,
};

use crate::claims::{CONTESTED, Claims, NONE};
use crate::engine::{self, Slot};
use crate::index::{Claimed, Indexed};
use crate::plan::Plan;
use crate::{AssignError, Balancer, GroupMember, MemberState, TopicInfo};

/// Where a balancer reads a member's owned partitions and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnedFrom {
    /// The sticky assignor's user data (previous assignment + generation, KIP-341). Eager
    /// members revoke everything before they join, so the subscription's owned partitions are
    /// empty and the user data is the only memory.
    StickyUserData,
    /// The subscription's owned partitions (v1+) and generation (v2+, KIP-792), falling back to
    /// the cooperative-sticky user data for the generation.
    Subscription,
}

/// Options of one run of the sticky driver.
pub(crate) struct Run<'a> {
    pub(crate) owned_from: OwnedFrom,
    /// Apply the cooperative adjustment (KIP-429): partitions changing owner are withheld.
    pub(crate) cooperative: bool,
    /// Weight of each member (input order); `None` for all ones.
    pub(crate) weights: Option<&'a [u32]>,
}

/// Parses sticky user data in place into global partition numbers: `Ok(generation)` (`None` for
/// v0), or `Err` when it cannot be parsed. No allocation per topic: large groups carry a
/// million of these entries.
fn parse_sticky_user_data(
    idx: &Indexed,
    member: usize,
    data: &[u8],
    out: &mut Claimed,
) -> Result<Option<i32>, ()> {
    let class = idx.member_class[member];
    let rd_i32 = |d: &[u8], at: usize| -> Result<i32, ()> {
        d.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(())
    };
    let mut at = 0usize;
    let n = rd_i32(data, at)?;
    at += 4;
    if n < 0 || n as usize > data.len() / 6 {
        return Err(());
    }
    let mut next = 0u32;
    for _ in 0..n {
        let len = data
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or(())?;
        at += 2;
        if len < 0 {
            return Err(());
        }
        let name = data.get(at..at + len as usize).ok_or(())?;
        let name = std::str::from_utf8(name).map_err(|_| ())?;
        at += len as usize;
        let np = rd_i32(data, at)?;
        at += 4;
        if np < 0 || np as usize > (data.len() - at) / 4 {
            return Err(());
        }
        let t = idx.claimed_topic(name, &mut next);
        let subscribed = t.is_some_and(|t| idx.subscribes(class, t));
        for i in 0..np as usize {
            let p = rd_i32(data, at + i * 4)?;
            out.push(t.and_then(|t| idx.table.global(t, p)), subscribed);
        }
        at += np as usize * 4;
    }
    Ok(if data.len() - at >= 4 {
        Some(rd_i32(data, at)?)
    } else {
        None
    })
}

/// Runs the sticky family on a group.
pub(crate) fn run(
    members: &[GroupMember],
    topics: &[TopicInfo],
    opts: &Run<'_>,
) -> Result<Plan, AssignError> {
    let idx = Indexed::new(members, topics)?;
    let mut warnings = idx.warnings.clone();
    let n = members.len();
    // Claims and generations, in Java member order (ties between equal generations are then
    // broken the way Java breaks them).
    let mut dropped = 0usize;
    let mut unparsable = 0usize;
    let mut claims: Vec<Claimed> = Vec::with_capacity(n);
    let mut generations: Vec<i32> = Vec::with_capacity(n);
    for &m in &idx.order {
        let m = m as usize;
        let sub = &members[m].subscription;
        let mut out = Claimed::default();
        let generation = match opts.owned_from {
            OwnedFrom::StickyUserData => match sub.user_data.as_deref().filter(|d| !d.is_empty()) {
                None => DEFAULT_GENERATION,
                Some(d) => match parse_sticky_user_data(&idx, m, d, &mut out) {
                    Ok(g) => g.unwrap_or(DEFAULT_GENERATION),
                    Err(()) => {
                        // Java `StickyAssignor`: user data that cannot be parsed means "no
                        // previous assignment".
                        unparsable += 1;
                        out.clear();
                        DEFAULT_GENERATION
                    }
                },
            },
            OwnedFrom::Subscription => {
                let owned = sub
                    .owned_partitions
                    .iter()
                    .map(|o| (o.topic.as_str(), o.partitions.as_slice()));
                idx.claims(m, owned, &mut out);
                if sub.generation_id != DEFAULT_GENERATION {
                    sub.generation_id
                } else {
                    decode_cooperative_user_data(sub.user_data.as_ref())
                        .unwrap_or(DEFAULT_GENERATION)
                }
            }
        };
        dropped += out.ignored;
        claims.push(out);
        generations.push(generation);
    }
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} claimed partitions were ignored (topic not subscribed, not in metadata, or partition out of range)"
        ));
    }
    if unparsable > 0 {
        warnings.push(format!(
            "{unparsable} members sent sticky user data that could not be parsed; treated as owning nothing"
        ));
    }
    let resolved = Claims::resolve(idx.table.partitions(), &claims, &generations);
    let contested = resolved.owner.iter().filter(|&&o| o == CONTESTED).count();
    if contested > 0 {
        warnings.push(format!(
            "{contested} partitions were claimed by several members in the same generation; nobody keeps them"
        ));
    }

    // Slots: one per member, or one per unit of weight (owned partitions dealt round-robin).
    let mut slots: Vec<Slot> = Vec::new();
    let mut slot_owner: Vec<u32> = Vec::new();
    for (jo, &m) in idx.order.iter().enumerate() {
        let m = m as usize;
        let valid = resolved.valid(jo as u32, &claims[jo]);
        let w = opts.weights.map_or(1, |w| w[m].max(1)) as usize;
        let class = idx.member_class[m];
        let rack = idx.member_rack[m];
        if w == 1 {
            slots.push(Slot {
                class,
                owned: valid,
                rack,
            });
            slot_owner.push(jo as u32);
        } else {
            let first = slots.len();
            for _ in 0..w {
                slots.push(Slot {
                    class,
                    owned: Vec::new(),
                    rack,
                });
                slot_owner.push(jo as u32);
            }
            for (i, p) in valid.into_iter().enumerate() {
                slots[first + i % w].owned.push(p);
            }
        }
    }
    let assigned = engine::balance(&idx.table, &idx.classes, &slots, !opts.cooperative);

    // Back to members (input order), merging a member's slots.
    let mut per_member: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut multi = vec![false; n];
    for (s, parts) in assigned.into_iter().enumerate() {
        let m = idx.order[slot_owner[s] as usize] as usize;
        if per_member[m].is_empty() {
            per_member[m] = parts;
        } else {
            per_member[m].extend(parts);
            multi[m] = true;
        }
    }
    for (m, ps) in per_member.iter_mut().enumerate() {
        if multi[m] {
            ps.sort_unstable();
        }
    }

    if opts.cooperative {
        // KIP-429: a partition whose current owner (the highest-generation claim, KIP-792) is
        // another member, or whose ownership is contested, is withheld this round; its owner
        // revokes it and rejoins, and the next round assigns it. Revoking more is always safe;
        // handing an owned partition straight to someone else is not. The owner may be a member
        // that dropped the partition's topic from its subscription: it keeps nothing of that
        // topic but may be consuming it until it sees this assignment (Java
        // `CooperativeStickyAssignor#computePartitionsTransferringOwnership` counts every claim).
        let mut java_pos = vec![0u32; n];
        for (jo, &m) in idx.order.iter().enumerate() {
            java_pos[m as usize] = jo as u32;
        }
        for (m, ps) in per_member.iter_mut().enumerate() {
            let me = java_pos[m];
            ps.retain(|&p| {
                let o = resolved.owner[p as usize];
                o == NONE || o == me
            });
        }
    }

    Ok(Plan::new(
        members,
        per_member,
        Arc::clone(&idx.table),
        warnings,
    ))
}

/// Kafka's `sticky` assignor (KIP-54, eager protocol): balance first, then keep as much of the
/// previous assignment as possible. Each member remembers its last assignment (through
/// [`Balancer::on_assignment`]) and sends it, with its generation, as user data v1 (KIP-341), so
/// the leader can tell a stale claim from a current one.
#[derive(Debug, Clone, Default)]
pub struct Sticky {
    /// The last assignment (topic, partitions) and its generation.
    previous: Option<(TopicPartitions, i32)>,
}

type TopicPartitions = Vec<(StrBytes, Vec<i32>)>;

impl Balancer for Sticky {
    fn protocol_name(&self) -> &'static str {
        "sticky"
    }

    fn user_data(&self, member: &MemberState<'_>) -> Option<Bytes> {
        let (previous_assignment, generation) = match &self.previous {
            Some((p, g)) => (p.clone(), *g),
            None => (
                member
                    .owned
                    .iter()
                    .map(|o| (o.topic.clone(), o.partitions.clone()))
                    .collect(),
                member.generation,
            ),
        };
        StickyUserData {
            previous_assignment,
            generation: Some(generation),
        }
        .encode()
        .ok()
    }

    fn assign(&self, members: &[GroupMember], topics: &[TopicInfo]) -> Result<Plan, AssignError> {
        run(
            members,
            topics,
            &Run {
                owned_from: OwnedFrom::StickyUserData,
                cooperative: false,
                weights: None,
            },
        )
    }

    fn on_assignment(&mut self, assignment: &ConsumerProtocolAssignment, generation: i32) {
        self.previous = Some((
            assignment
                .assigned_partitions
                .iter()
                .map(|t| (t.topic.clone(), t.partitions.clone()))
                .collect(),
            generation,
        ));
    }
}
