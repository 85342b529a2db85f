//! Kafka's Java ordering of strings and members, so that our leaders agree with Java and
//! librdkafka leaders on who gets what.

use std::cmp::Ordering;

use cohort_protocol::StrBytes;

use crate::{AssignError, GroupMember};

/// Compares two strings as Java's `String.compareTo` does: by UTF-16 code units. This differs
/// from Rust's byte order only for characters above U+FFFF against U+E000..U+FFFF, but a leader
/// that sorts differently from the Java client would assign differently.
pub fn java_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `MemberInfo` order: members with a group instance id first, by instance id, then the
/// others by member id (`AbstractPartitionAssignor.MemberInfo.compareTo`, KIP-345).
pub(crate) fn member_cmp(
    a_id: &StrBytes,
    a_instance: Option<&StrBytes>,
    b_id: &StrBytes,
    b_instance: Option<&StrBytes>,
) -> Ordering {
    match (a_instance, b_instance) {
        (Some(a), Some(b)) => java_cmp(a, b).then_with(|| java_cmp(a_id, b_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => java_cmp(a_id, b_id),
    }
}

/// Input positions of `members` in Java's member order (group instance id when present, then
/// member id); a member id given twice is an error rather than a silent double assignment.
pub(crate) fn member_order(members: &[GroupMember]) -> Result<Vec<u32>, AssignError> {
    let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(AssignError::DuplicateMember(w[0].to_owned()));
    }
    let mut order: Vec<u32> = (0..members.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&members[a as usize], &members[b as usize]);
        member_cmp(
            &a.member_id,
            a.group_instance_id.as_ref(),
            &b.member_id,
            b.group_instance_id.as_ref(),
        )
    });
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_order_differs_from_byte_order_above_the_bmp() {
        // U+FF61 (HALFWIDTH IDEOGRAPHIC FULL STOP) vs U+1F600 (an emoji, a surrogate pair in
        // UTF-16 starting with 0xD83D): Java puts the emoji first, byte order puts it last.
        let a = "\u{FF61}";
        let b = "\u{1F600}";
        assert_eq!(a.cmp(b), Ordering::Less);
        assert_eq!(java_cmp(a, b), Ordering::Greater);
        assert_eq!(java_cmp("a", "b"), Ordering::Less);
    }

    #[test]
    fn static_members_sort_first() {
        let m = |s: &str| StrBytes::from(s.to_owned());
        assert_eq!(
            member_cmp(&m("a"), None, &m("z"), Some(&m("i"))),
            Ordering::Greater
        );
        assert_eq!(
            member_cmp(&m("z"), Some(&m("i1")), &m("a"), Some(&m("i2"))),
            Ordering::Less
        );
    }
}
