//! The KIP-848 member against the scripted fake coordinator (`cohort::testing848`), in virtual
//! time: joining, reconciliation (revoke before assign, the broker withholding partitions until
//! they are released), full and partial heartbeats, leaving, commits with the member epoch, and
//! every row of the heartbeat error table.

use std::collections::BTreeSet;
use std::time::Duration;

use cohort::member::{CommitOffset, GroupEvent, MemberConfig, Phase};
use cohort::member848::{Member848, Subscription848};
use cohort::testing848::Sim848;
use cohort_protocol::{ApiKey, ErrorCode};

fn cfg(i: usize) -> MemberConfig {
    let mut c = MemberConfig::new("g");
    c.rebalance_timeout = Duration::from_secs(10);
    c.request_timeout = Duration::from_secs(5);
    c.retry_backoff = Duration::from_millis(100);
    c.retry_backoff_max = Duration::from_secs(1);
    c.jitter_seed = i as u64;
    c
}

fn member(s: &Sim848, i: usize) -> Member848 {
    Member848::new(
        cfg(i),
        format!("member-{i}"),
        Subscription848::Topics(vec!["t".into()]),
        s.now,
    )
}

fn count(s: &Sim848, i: usize) -> usize {
    s.members[i].assignment().values().map(BTreeSet::len).sum()
}

/// Acknowledges every revocation and loss at once, as an application that has nothing in
/// flight does.
fn ack_all(s: &mut Sim848) {
    for i in 0..s.members.len() {
        let tokens: Vec<u64> = s.events[i]
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Revoked { token, .. } | GroupEvent::Lost { token, .. } => Some(*token),
                _ => None,
            })
            .collect();
        let now = s.now;
        for t in tokens {
            s.members[i].handle_revoked(now, t);
        }
    }
}

fn run_acking(s: &mut Sim848, d: Duration) {
    let end = s.now + d;
    while s.now < end {
        s.run(Duration::from_millis(50));
        ack_all(s);
    }
}

/// No partition owned by two members at once.
fn exclusive(s: &Sim848) -> bool {
    let mut seen = BTreeSet::new();
    s.members.iter().all(|m| {
        m.assignment()
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .all(|tp| seen.insert(tp))
    })
}

fn stable_split(s: &mut Sim848, each: &[usize]) -> bool {
    let mut ok = false;
    for _ in 0..200 {
        run_acking(s, Duration::from_millis(100));
        assert!(exclusive(s), "a partition had two owners");
        if each.iter().enumerate().all(|(i, n)| count(s, i) == *n) {
            ok = true;
            break;
        }
    }
    ok
}

#[test]
fn a_member_joins_with_epoch_zero_and_a_full_heartbeat_then_sends_only_changes() {
    let mut s = Sim848::new(&[("t", 4)]);
    let m = member(&s, 0);
    s.add(m);
    assert!(stable_split(&mut s, &[4]));
    let hb = &s.heartbeats[0];
    let first = &hb[0];
    assert_eq!(first.member_epoch, 0);
    assert_eq!(first.member_id.as_str(), "member-0");
    assert!(first.subscribed_topic_names.is_some());
    assert_eq!(first.rebalance_timeout_ms, 10_000);
    assert!(
        first.topic_partitions.is_some(),
        "joining reports (no) owned partitions"
    );
    // The acknowledgement of the assignment reports the owned partitions; later heartbeats
    // carry nothing that did not change.
    let ack = hb
        .iter()
        .find(|h| h.member_epoch > 0 && h.topic_partitions.is_some())
        .expect("an acknowledgement");
    assert_eq!(
        ack.topic_partitions.as_ref().unwrap()[0].partitions.len(),
        4
    );
    s.run(Duration::from_secs(3));
    let last = s.heartbeats[0].last().unwrap();
    assert!(last.member_epoch > 0);
    assert!(last.subscribed_topic_names.is_none(), "{last:?}");
    assert!(last.topic_partitions.is_none(), "{last:?}");
    assert_eq!(last.rebalance_timeout_ms, -1);
    assert_eq!(s.members[0].phase(), Phase::Stable);
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_released_them() {
    let mut s = Sim848::new(&[("t", 4)]);
    let a = member(&s, 0);
    s.add(a);
    assert!(stable_split(&mut s, &[4]));
    let b = member(&s, 1);
    s.add(b);
    // a is told to give two up; until it acknowledges, b gets none of them.
    s.run(Duration::from_secs(2));
    let revoked = s.events[0]
        .iter()
        .any(|e| matches!(e, GroupEvent::Revoked { partitions, .. } if partitions["t"].len() == 2));
    assert!(
        revoked,
        "a was asked to revoke two partitions: {:?}",
        s.events[0]
    );
    assert_eq!(s.members[0].phase(), Phase::Revoking);
    assert_eq!(count(&s, 1), 0, "b got partitions a still owns");
    assert!(exclusive(&s));
    assert!(stable_split(&mut s, &[2, 2]));
    // The revocation came before the assignment that followed it.
    let kinds: Vec<&str> = s.events[0]
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Revoked { .. } => Some("revoked"),
            GroupEvent::Assigned { .. } => Some("assigned"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["assigned", "revoked", "assigned"]);
}

#[test]
fn leaving_sends_epoch_minus_one_and_a_static_member_minus_two() {
    for (instance, want) in [(None, -1), (Some("static-0"), -2)] {
        let mut s = Sim848::new(&[("t", 2)]);
        let mut c = cfg(0);
        c.group_instance_id = instance.map(str::to_owned);
        let m = Member848::new(
            c,
            "m".into(),
            Subscription848::Topics(vec!["t".into()]),
            s.now,
        );
        s.add(m);
        assert!(stable_split(&mut s, &[2]));
        let now = s.now;
        s.members[0].leave(now);
        s.run(Duration::from_secs(1));
        assert_eq!(s.heartbeats[0].last().unwrap().member_epoch, want);
        assert_eq!(s.members[0].phase(), Phase::Left);
        assert!(s.events[0].contains(&GroupEvent::Left));
        assert!(s.group_members().is_empty());
    }
}

#[test]
fn fenced_members_lose_everything_and_rejoin_with_epoch_zero_and_the_same_id() {
    for code in [ErrorCode::FencedMemberEpoch, ErrorCode::UnknownMemberId] {
        let mut s = Sim848::new(&[("t", 2)]);
        let m = member(&s, 0);
        s.add(m);
        assert!(stable_split(&mut s, &[2]));
        let sent = s.heartbeats[0].len();
        s.fail_next(ApiKey::ConsumerGroupHeartbeat, code);
        // Without the application's acknowledgement the member does not heartbeat.
        s.run(Duration::from_secs(2));
        assert!(
            s.events[0]
                .iter()
                .any(|e| matches!(e, GroupEvent::Lost { .. })),
            "{code:?}: no Lost event"
        );
        assert_eq!(s.members[0].phase(), Phase::Revoking, "{code:?}");
        assert_eq!(count(&s, 0), 0);
        // The application may still hold records of the lost partitions: none go out.
        let until = s.members[0]
            .deliverable_until()
            .expect("closed, not unlimited, while fenced");
        assert!(until <= s.now, "{code:?}: delivery open while fenced");
        let after_fence = s.heartbeats[0].len();
        assert_eq!(
            after_fence,
            sent + 1,
            "{code:?}: heartbeats went on while fenced"
        );
        assert!(stable_split(&mut s, &[2]), "{code:?}");
        let until = s.members[0]
            .deliverable_until()
            .expect("a limit in the group");
        assert!(
            until > s.now,
            "{code:?}: delivery open again once back in the group"
        );
        let rejoin = &s.heartbeats[0][after_fence];
        assert_eq!(rejoin.member_epoch, 0, "{code:?}");
        assert_eq!(rejoin.member_id.as_str(), "member-0", "{code:?}");
        assert!(
            rejoin.subscribed_topic_names.is_some(),
            "{code:?}: not a full heartbeat"
        );
    }
}

#[test]
fn a_moved_coordinator_is_found_again_and_hears_a_full_heartbeat() {
    let mut s = Sim848::new(&[("t", 2)]);
    let m = member(&s, 0);
    s.add(m);
    assert!(stable_split(&mut s, &[2]));
    let finds = |s: &Sim848| {
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::FindCoordinator)
            .count()
    };
    let before = finds(&s);
    s.coordinator_id = 2;
    let n = s.heartbeats[0].len();
    s.run(Duration::from_secs(2));
    assert_eq!(finds(&s), before + 1);
    let full = s.heartbeats[0][n..]
        .iter()
        .find(|h| h.subscribed_topic_names.is_some());
    assert!(full.is_some(), "no full heartbeat after the move");
    assert_eq!(
        count(&s, 0),
        2,
        "the partitions stay through a coordinator move"
    );
    assert_eq!(s.members[0].phase(), Phase::Stable);
}

#[test]
fn loading_coordinators_are_retried_and_fatal_errors_stop_the_member() {
    let mut s = Sim848::new(&[("t", 2)]);
    let m = member(&s, 0);
    s.add(m);
    s.fail_next(
        ApiKey::ConsumerGroupHeartbeat,
        ErrorCode::CoordinatorLoadInProgress,
    );
    assert!(stable_split(&mut s, &[2]));
    for code in [
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::InvalidRequest,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::UnsupportedAssignor,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::FencedInstanceId,
        ErrorCode::InvalidRegularExpression,
        ErrorCode::UnsupportedVersion,
    ] {
        let mut s = Sim848::new(&[("t", 2)]);
        let m = member(&s, 0);
        s.add(m);
        s.fail_next(ApiKey::ConsumerGroupHeartbeat, code);
        s.run(Duration::from_secs(2));
        assert_eq!(s.members[0].phase(), Phase::Failed, "{code:?}");
        assert!(
            s.events[0]
                .iter()
                .any(|e| matches!(e, GroupEvent::Fatal(_))),
            "{code:?}"
        );
    }
    // A topic the member may not read is reported; the member stays.
    let mut s = Sim848::new(&[("t", 2)]);
    let m = member(&s, 0);
    s.add(m);
    assert!(stable_split(&mut s, &[2]));
    s.fail_next(
        ApiKey::ConsumerGroupHeartbeat,
        ErrorCode::TopicAuthorizationFailed,
    );
    s.run(Duration::from_secs(2));
    assert!(
        s.events[0]
            .iter()
            .any(|e| matches!(e, GroupEvent::Error(_)))
    );
    assert_eq!(s.members[0].phase(), Phase::Stable);
}

#[test]
fn commits_carry_the_member_epoch_and_a_stale_epoch_is_retried() {
    let mut s = Sim848::new(&[("t", 2)]);
    let m = member(&s, 0);
    s.add(m);
    assert!(stable_split(&mut s, &[2]));
    s.fail_next(ApiKey::OffsetCommit, ErrorCode::StaleMemberEpoch);
    let now = s.now;
    let id = s.members[0].commit(now, vec![CommitOffset::new("t", 0, 7)]);
    s.run(Duration::from_secs(2));
    let done = s.events[0].iter().find_map(|e| match e {
        GroupEvent::Committed { id: i, result } if *i == id => Some(result.clone()),
        _ => None,
    });
    assert_eq!(done, Some(Ok(vec![CommitOffset::new("t", 0, 7)])));
    assert_eq!(
        s.committed.get(&cohort::TopicPartition::new("t", 0)),
        Some(&7)
    );
    // Not for a partition the member does not own.
    let now = s.now;
    let id = s.members[0].commit(now, vec![CommitOffset::new("t", 9, 1)]);
    s.run(Duration::from_millis(100));
    let done = s.events[0].iter().find_map(|e| match e {
        GroupEvent::Committed { id: i, result } if *i == id => Some(result.is_err()),
        _ => None,
    });
    assert_eq!(done, Some(true));
}

#[test]
fn a_fenced_member_cannot_commit() {
    let mut s = Sim848::new(&[("t", 2)]);
    let m = member(&s, 0);
    s.add(m);
    assert!(stable_split(&mut s, &[2]));
    s.fail_next(ApiKey::ConsumerGroupHeartbeat, ErrorCode::FencedMemberEpoch);
    s.run(Duration::from_secs(2));
    let now = s.now;
    let id = s.members[0].commit(now, vec![CommitOffset::new("t", 0, 3)]);
    s.run(Duration::from_millis(100));
    let done = s.events[0].iter().find_map(|e| match e {
        GroupEvent::Committed { id: i, result } if *i == id => Some(result.clone()),
        _ => None,
    });
    assert!(matches!(done, Some(Err(_))), "{done:?}");
    assert!(s.committed.is_empty());
}

#[test]
fn a_stalled_application_leaves_and_rejoins_when_it_polls() {
    let mut s = Sim848::new(&[("t", 2)]);
    let mut c = cfg(0);
    c.max_poll_interval = Duration::from_secs(5);
    let m = Member848::new(
        c,
        "m".into(),
        Subscription848::Topics(vec!["t".into()]),
        s.now,
    );
    s.add(m);
    assert!(stable_split(&mut s, &[2]));
    s.run(Duration::from_secs(6));
    assert!(
        s.events[0]
            .iter()
            .any(|e| matches!(e, GroupEvent::Error(cohort::Error::PollTimeout { .. })))
    );
    assert_eq!(s.members[0].phase(), Phase::Unjoined);
    assert_eq!(count(&s, 0), 0);
    assert!(s.heartbeats[0].iter().any(|h| h.member_epoch == -1));
    let now = s.now;
    s.members[0].handle_poll(now);
    assert!(stable_split(&mut s, &[2]));
}

#[test]
fn random_joins_and_leaves_never_give_a_partition_two_owners() {
    let mut s = Sim848::new(&[("t", 12)]);
    for i in 0..3 {
        let m = member(&s, i);
        s.add(m);
    }
    assert!(stable_split(&mut s, &[4, 4, 4]));
    for round in 0..4 {
        let i = s.members.len();
        let m = member(&s, i);
        s.add(m);
        run_acking(&mut s, Duration::from_secs(1));
        assert!(exclusive(&s), "round {round}");
        let leaving = round % s.members.len();
        let now = s.now;
        s.members[leaving].leave(now);
        run_acking(&mut s, Duration::from_secs(5));
        assert!(exclusive(&s), "round {round}");
    }
    let staying: usize = (0..s.members.len())
        .filter(|&i| s.members[i].phase() == Phase::Stable)
        .map(|i| count(&s, i))
        .sum();
    assert_eq!(staying, 12, "every partition owned once the group settled");
}
