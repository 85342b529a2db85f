//! `cohort-weighted-sticky`: a capacity-weighted cooperative sticky balancer of our own.
//!
//! Each member advertises a weight (say, its cores) in its user data and receives a share of the
//! partitions proportional to it, with the sticky engine's guarantees: balance (in proportion to
//! weight) first, then rack locality, then as few moves as possible, and the cooperative protocol
//! (a partition changing owner is revoked first and assigned in the next round).
//!
//! A member of weight `w` takes part as `w` unit slots; the engine balances slots, so a member's
//! count is within `w` of its exact proportional share and equal-weight members differ by at most
//! one. Weights are clamped to 1..=1000; user data that cannot be parsed counts as weight 1, so a
//! member running another balancer version cannot break the group.
//!
//! User data: `"CW" | int16 version (0) | int32 weight | int32 generation`. The two magic bytes
//! keep another balancer's user data from being read as a weight; newer versions may append
//! fields, which readers ignore.

use bytes::{BufMut, Bytes, BytesMut};

use crate::plan::Plan;
use crate::sticky::{OwnedFrom, Run, run};
use crate::{AssignError, Balancer, GroupMember, MemberState, TopicInfo};

/// Protocol name in JoinGroup.
pub const PROTOCOL_NAME: &str = "cohort-weighted-sticky";

/// Largest weight a member may advertise.
pub const MAX_WEIGHT: u32 = 1000;

/// Encodes the weighted balancer's user data.
pub fn encode_weighted_user_data(weight: u32, generation: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.put_slice(MAGIC);
    b.put_i16(0);
    b.put_i32(weight.clamp(1, MAX_WEIGHT) as i32);
    b.put_i32(generation);
    b.freeze()
}

/// Reads a member's weight from its user data: 1 when absent or unparsable.
pub fn decode_weight(user_data: Option<&Bytes>) -> u32 {
    match user_data {
        Some(d) if d.len() >= 8 && &d[..2] == MAGIC && i16::from_be_bytes([d[2], d[3]]) >= 0 => {
            let w = i32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            (w.max(1) as u32).min(MAX_WEIGHT)
        }
        _ => 1,
    }
}

/// First bytes of the weighted balancer's user data.
const MAGIC: &[u8; 2] = b"CW";

/// The capacity-weighted sticky balancer.
#[derive(Debug, Clone, Copy)]
pub struct WeightedSticky {
    weight: u32,
}

impl WeightedSticky {
    /// A balancer whose member advertises `weight` (clamped to 1..=1000).
    pub fn new(weight: u32) -> Self {
        Self {
            weight: weight.clamp(1, MAX_WEIGHT),
        }
    }

    /// The weight this member advertises.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

impl Balancer for WeightedSticky {
    fn protocol_name(&self) -> &'static str {
        PROTOCOL_NAME
    }

    fn supports_cooperative(&self) -> bool {
        true
    }

    fn user_data(&self, member: &MemberState<'_>) -> Option<Bytes> {
        Some(encode_weighted_user_data(self.weight, member.generation))
    }

    fn assign(&self, members: &[GroupMember], topics: &[TopicInfo]) -> Result<Plan, AssignError> {
        let weights: Vec<u32> = members
            .iter()
            .map(|m| decode_weight(m.subscription.user_data.as_ref()))
            .collect();
        run(
            members,
            topics,
            &Run {
                owned_from: OwnedFrom::Subscription,
                cooperative: true,
                weights: Some(&weights),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_user_data_round_trips_and_tolerates_garbage() {
        assert_eq!(decode_weight(Some(&encode_weighted_user_data(7, 3))), 7);
        assert_eq!(
            decode_weight(Some(&encode_weighted_user_data(5000, 3))),
            MAX_WEIGHT
        );
        assert_eq!(decode_weight(Some(&Bytes::from_static(b"x"))), 1);
        // Sticky user data (array length 1, then a topic) is not a weight.
        assert_eq!(
            decode_weight(Some(&Bytes::from_static(&[
                0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 0
            ]))),
            1
        );
        assert_eq!(decode_weight(None), 1);
        // A newer version with more fields still yields the weight.
        let mut b = BytesMut::new();
        b.put_slice(MAGIC);
        b.put_i16(3);
        b.put_i32(4);
        b.put_slice(b"future");
        assert_eq!(decode_weight(Some(&b.freeze())), 4);
    }
}
