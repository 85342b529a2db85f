//! Resolving ownership claims by generation.
//!
//! Every member reports the partitions it owns and the generation it got them in. A partition
//! claimed by several members belongs to the one claim with the highest generation; when two
//! claims share the highest generation neither is trusted and nobody keeps the partition
//! (Java `AbstractStickyAssignor.allSubscriptionsEqual`: "two members of the same generation own
//! the same partition, revoke the partition"; KIP-341; KIP-792 for cooperative groups).

use crate::index::Claimed;

/// No claim.
pub(crate) const NONE: u32 = u32::MAX;
/// Claimed by two members at the same, highest generation.
pub(crate) const CONTESTED: u32 = u32::MAX - 1;

/// Resolved ownership of every partition.
pub(crate) struct Claims {
    /// Owner (slot number of the caller's numbering), [`NONE`] or [`CONTESTED`].
    pub(crate) owner: Vec<u32>,
    generation: Vec<i32>,
}

impl Claims {
    /// Resolves `claims[i]` (partitions claimed by member `i` at generation `generations[i]`),
    /// members being numbered in Java order so that ties resolve as Java resolves them.
    pub(crate) fn resolve(partitions: u32, claims: &[Claimed], generations: &[i32]) -> Self {
        let mut owner = vec![NONE; partitions as usize];
        let mut generation = vec![i32::MIN; partitions as usize];
        for (m, c) in claims.iter().enumerate() {
            let m = m as u32;
            let g = generations[m as usize];
            // A claim on a topic the member dropped counts as any other (Java weighs every claim
            // on a topic of the group); `valid` never lets the member keep it.
            for &p in c.kept.iter().chain(&c.unsubscribed) {
                let p = p as usize;
                let o = owner[p];
                if o == m {
                    continue;
                }
                if o == NONE || g > generation[p] {
                    owner[p] = m;
                    generation[p] = g;
                } else if g == generation[p] {
                    owner[p] = CONTESTED;
                }
            }
        }
        Self { owner, generation }
    }

    /// The partitions member `m` really owns and may keep, in its claim order.
    pub(crate) fn valid(&self, m: u32, claimed: &Claimed) -> Vec<u32> {
        let mut out: Vec<u32> = claimed
            .kept
            .iter()
            .copied()
            .filter(|&p| self.owner[p as usize] == m)
            .collect();
        // A member listing a partition twice keeps it once. Claims in ascending order (how
        // every client lists them) cannot repeat, and checking that is a fraction of hashing a
        // million claims.
        if out.len() > 1 && !out.is_sorted_by(|a, b| a < b) {
            let mut seen = rustc_hash::FxHashSet::default();
            seen.reserve(out.len());
            out.retain(|p| seen.insert(*p));
        }
        out
    }

    /// Generation of the winning claim on `p` (meaningless for unclaimed partitions).
    #[allow(dead_code)]
    pub(crate) fn generation(&self, p: u32) -> i32 {
        self.generation[p as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(ps: &[u32]) -> Claimed {
        Claimed {
            kept: ps.to_vec(),
            ..Claimed::default()
        }
    }

    #[test]
    fn highest_generation_wins_and_ties_invalidate() {
        // p0: m0@5, m1@7 -> m1. p1: m0@5, m2@5 -> contested. p2: m2@5 only.
        let claims = [kept(&[0, 1]), kept(&[0]), kept(&[1, 2])];
        let c = Claims::resolve(3, &claims, &[5, 7, 5]);
        assert_eq!(c.owner, vec![1, CONTESTED, 2]);
        assert_eq!(c.valid(0, &claims[0]), Vec::<u32>::new());
        assert_eq!(c.valid(1, &claims[1]), vec![0]);
        assert_eq!(c.valid(2, &claims[2]), vec![2]);
    }

    #[test]
    fn a_higher_generation_overrides_a_contested_partition() {
        let c = Claims::resolve(1, &[kept(&[0]), kept(&[0]), kept(&[0])], &[3, 3, 4]);
        assert_eq!(c.owner, vec![2]);
    }

    #[test]
    fn duplicate_claims_by_one_member_are_not_a_conflict() {
        let claims = [kept(&[0, 0])];
        let c = Claims::resolve(1, &claims, &[1]);
        assert_eq!(c.owner, vec![0]);
        assert_eq!(c.valid(0, &claims[0]), vec![0]);
    }

    #[test]
    fn a_newer_claim_on_a_dropped_topic_beats_an_older_one_and_is_not_kept() {
        // m0 claims p0 at generation 11 after unsubscribing from its topic; m1's claim is from
        // generation 10. m0 owns p0 (so a cooperative round withholds it from m1) yet keeps
        // nothing; m1 keeps nothing either.
        let dropped = Claimed {
            unsubscribed: vec![0],
            ..Claimed::default()
        };
        let claims = [dropped, kept(&[0])];
        let c = Claims::resolve(1, &claims, &[11, 10]);
        assert_eq!(c.owner, vec![0]);
        assert_eq!(c.valid(0, &claims[0]), Vec::<u32>::new());
        assert_eq!(c.valid(1, &claims[1]), Vec::<u32>::new());
    }
}
