//! The member state machine against the scripted fake coordinator, with virtual time: the join
//! protocol, every row of the error table, stale responses, commit/rebalance races, coordinator
//! moves, heartbeats during slow processing, static membership, eager and cooperative
//! revocation. Every case builds its own simulation.

use std::time::Duration;

use cohort::TopicPartition;
use cohort::member::{Assignment, CommitOffset, GroupEvent, Member, MemberConfig, Phase};
use cohort::testing::Sim;
use cohort_balancers::{Balancer, CooperativeSticky, Range, TopicInfo};
use cohort_protocol::consumer_protocol::decode_subscription;
use cohort_protocol::{ApiKey, ErrorCode};

fn cfg() -> MemberConfig {
    let mut c = MemberConfig::new("g");
    c.session_timeout = Duration::from_secs(6);
    c.rebalance_timeout = Duration::from_secs(10);
    c.heartbeat_interval = Duration::from_secs(1);
    c.max_poll_interval = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(5);
    c.retry_backoff = Duration::from_millis(100);
    c.retry_backoff_max = Duration::from_secs(1);
    c.jitter_seed = 1;
    c
}

fn sim() -> Sim {
    Sim::new(vec![TopicInfo::new("t", 6)])
}

fn member(s: &Sim, c: MemberConfig, balancer: Box<dyn Balancer>) -> Member {
    Member::new(c, vec![balancer], vec!["t".into()], s.now)
}

/// Partitions in an assignment.
fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

fn assigned(events: &[GroupEvent]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Assigned { assignment, .. } => Some(count(assignment)),
            _ => None,
        })
        .collect()
}

/// Runs the simulation in 100 ms steps, acknowledging revocations as an application would,
/// until member `i` is stable with `n` partitions; fails after `steps` steps.
fn run_until_stable_with(s: &mut Sim, i: usize, n: usize, steps: usize) {
    for _ in 0..steps {
        ack_revocations(s);
        s.run(Duration::from_millis(100));
        if s.members[i].phase() == Phase::Stable && count(s.members[i].assignment()) == n {
            return;
        }
    }
    panic!(
        "member {i} is {:?} with {} partitions, not stable with {n}",
        s.members[i].phase(),
        count(s.members[i].assignment())
    );
}

fn stable(s: &Sim) -> bool {
    s.members.iter().all(|m| m.phase() == Phase::Stable)
}

/// Acknowledges every revocation and loss the members reported, as an application would.
fn ack_revocations(s: &mut Sim) {
    for i in 0..s.members.len() {
        let evs = s.events[i].clone();
        for e in evs {
            if let GroupEvent::Revoked { token, .. } | GroupEvent::Lost { token, .. } = e {
                let now = s.now;
                s.members[i].handle_revoked(now, token);
            }
        }
    }
}

#[test]
fn single_member_joins_with_member_id_required_and_gets_everything() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let ev = s.take_events(0);
    assert_eq!(assigned(&ev), vec![6]);
    // FindCoordinator, JoinGroup (MEMBER_ID_REQUIRED), JoinGroup, Metadata (leader), SyncGroup.
    assert_eq!(
        &s.sent[0][..5],
        &[
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::JoinGroup,
            ApiKey::Metadata,
            ApiKey::SyncGroup
        ]
    );
    assert!(s.members[0].is_leader());
    assert_eq!(s.members[0].member_id(), "member-1");
    // Heartbeats keep flowing.
    s.run(Duration::from_secs(5));
    assert!(
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::Heartbeat)
            .count()
            >= 4
    );
}

#[test]
fn two_members_split_partitions_and_a_leave_rebalances() {
    let mut s = sim();
    let a = member(&s, cfg(), Box::new(Range));
    let b = member(&s, cfg(), Box::new(Range));
    s.add(a);
    s.add(b);
    assert!(s.run_until(Duration::from_secs(10), |s| {
        stable(s) && s.members.iter().all(|m| count(m.assignment()) == 3)
    }));
    // b leaves cleanly: a is told to rebalance through its heartbeat, revokes (eager), rejoins
    // and gets all six partitions.
    let now = s.now;
    s.members[1].leave(now);
    s.run_until(Duration::from_secs(5), |s| {
        s.members[1].phase() == Phase::Left
    });
    assert!(s.take_events(1).contains(&GroupEvent::Left));
    run_until_stable_with(&mut s, 0, 6, 100);
    let ev = s.take_events(0);
    assert!(
        ev.iter().any(|e| matches!(e, GroupEvent::Revoked { .. })),
        "eager members revoke before rejoining: {ev:?}"
    );
}

#[test]
fn member_id_required_then_unknown_member_id_resets_the_id() {
    let mut s = sim();
    s.fail_next(ApiKey::JoinGroup, ErrorCode::MemberIdRequired);
    s.fail_next(ApiKey::JoinGroup, ErrorCode::UnknownMemberId);
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    // MEMBER_ID_REQUIRED (scripted, id member-1), UNKNOWN_MEMBER_ID (scripted, id reset), then
    // the fake's own MEMBER_ID_REQUIRED hands out member-2 and the join succeeds.
    assert_eq!(
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::JoinGroup)
            .count(),
        4
    );
    assert_eq!(s.members[0].member_id(), "member-2");
}

#[test]
fn join_retriable_errors_back_off_and_fatal_errors_stop() {
    for (code, fatal) in [
        (ErrorCode::CoordinatorLoadInProgress, false),
        (ErrorCode::RebalanceInProgress, false),
        (ErrorCode::InconsistentGroupProtocol, true),
        (ErrorCode::InvalidSessionTimeout, true),
        (ErrorCode::GroupAuthorizationFailed, true),
        (ErrorCode::GroupMaxSizeReached, true),
        (ErrorCode::FencedInstanceId, true),
    ] {
        let mut s = sim();
        let m = member(&s, cfg(), Box::new(Range));
        s.add(m);
        assert!(s.run_until(Duration::from_secs(5), stable), "{code:?}");
        // Force a rejoin and answer it with the code.
        s.fail_next(ApiKey::Heartbeat, ErrorCode::RebalanceInProgress);
        s.fail_next(ApiKey::JoinGroup, code);
        s.run(Duration::from_secs(3));
        ack_revocations(&mut s);
        s.run(Duration::from_secs(3));
        let ev = s.take_events(0);
        if fatal {
            assert_eq!(s.members[0].phase(), Phase::Failed, "{code:?}");
            assert!(
                ev.iter().any(|e| matches!(e, GroupEvent::Fatal(_))),
                "{code:?}"
            );
        } else {
            assert_eq!(s.members[0].phase(), Phase::Stable, "{code:?}");
            assert!(
                !ev.iter().any(|e| matches!(e, GroupEvent::Fatal(_))),
                "{code:?}"
            );
        }
    }
}

#[test]
fn the_jitter_seed_decides_the_retry_schedule() {
    // JoinGroup answered COORDINATOR_LOAD_IN_PROGRESS five times: the member retries with
    // backoff (KIP-580). When, relative to the start, is decided by the seed alone.
    let schedule = |seed: u64| {
        let mut s = sim();
        let start = s.now;
        for _ in 0..5 {
            s.fail_next(ApiKey::JoinGroup, ErrorCode::CoordinatorLoadInProgress);
        }
        let mut c = cfg();
        c.jitter_seed = seed;
        let m = member(&s, c, Box::new(Range));
        s.add(m);
        let mut joins = Vec::new();
        s.run_until(Duration::from_secs(6), |s| {
            let n = s.sent[0]
                .iter()
                .filter(|a| **a == ApiKey::JoinGroup)
                .count();
            if n > joins.len() {
                joins.push(s.now - start);
            }
            false
        });
        // The first join is answered MEMBER_ID_REQUIRED (KIP-394) before the scripted errors.
        assert_eq!(joins.len(), 7, "five failed joins among seven");
        joins
    };
    assert_eq!(schedule(7), schedule(7));
    assert_ne!(schedule(7), schedule(8));
}

#[test]
fn sync_errors() {
    // REBALANCE_IN_PROGRESS: rejoin, keep id. UNKNOWN_MEMBER_ID: reset id. ILLEGAL_GENERATION:
    // keep id. NOT_COORDINATOR: rediscover. FENCED_INSTANCE_ID: fatal.
    for (code, keeps_id, rediscovers, fatal) in [
        (ErrorCode::RebalanceInProgress, true, false, false),
        (ErrorCode::UnknownMemberId, false, false, false),
        (ErrorCode::IllegalGeneration, true, false, false),
        (ErrorCode::NotCoordinator, true, true, false),
        (ErrorCode::FencedInstanceId, true, false, true),
    ] {
        let mut s = sim();
        s.fail_next(ApiKey::SyncGroup, code);
        let m = member(&s, cfg(), Box::new(Range));
        s.add(m);
        s.run(Duration::from_secs(4));
        let finds = s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::FindCoordinator)
            .count();
        if fatal {
            assert_eq!(s.members[0].phase(), Phase::Failed, "{code:?}");
            continue;
        }
        assert!(
            s.run_until(Duration::from_secs(5), stable),
            "{code:?} did not recover"
        );
        assert_eq!(finds >= 2, rediscovers, "{code:?} finds={finds}");
        let joins = s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::JoinGroup)
            .count();
        // Initial MEMBER_ID_REQUIRED round + join, then one more join after the error; an id
        // reset costs another MEMBER_ID_REQUIRED round.
        let expected = if keeps_id { 3 } else { 4 };
        assert_eq!(joins, expected, "{code:?}: {:?}", s.sent[0]);
    }
}

#[test]
fn heartbeat_errors_and_lost_partitions() {
    for code in [ErrorCode::UnknownMemberId, ErrorCode::IllegalGeneration] {
        let mut s = sim();
        let m = member(&s, cfg(), Box::new(Range));
        s.add(m);
        assert!(s.run_until(Duration::from_secs(5), stable));
        let id_before = s.members[0].member_id().to_owned();
        s.take_events(0);
        s.fail_next(ApiKey::Heartbeat, code);
        s.run(Duration::from_millis(1500));
        let ev = s.take_events(0);
        // The generation is gone: partitions are lost (not revoked), never committed.
        assert!(
            ev.iter().any(|e| matches!(e, GroupEvent::Lost { .. })),
            "{code:?}: {ev:?}"
        );
        assert!(
            !ev.iter().any(|e| matches!(e, GroupEvent::Revoked { .. })),
            "{code:?}"
        );
        ack_revocations(&mut s);
        assert!(s.run_until(Duration::from_secs(5), stable));
        if code == ErrorCode::IllegalGeneration {
            assert_eq!(
                s.members[0].member_id(),
                id_before,
                "ILLEGAL_GENERATION keeps the member id"
            );
        } else {
            assert_ne!(
                s.members[0].member_id(),
                id_before,
                "UNKNOWN_MEMBER_ID resets it"
            );
        }
    }
}

#[test]
fn heartbeat_rebalance_in_progress_keeps_heartbeating_while_revoking() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.take_events(0);
    s.fail_next(ApiKey::Heartbeat, ErrorCode::RebalanceInProgress);
    s.run(Duration::from_millis(1200));
    let ev = s.take_events(0);
    let token = ev
        .iter()
        .find_map(|e| match e {
            GroupEvent::Revoked { token, .. } => Some(*token),
            _ => None,
        })
        .expect("eager revoke");
    assert_eq!(s.members[0].phase(), Phase::Revoking);
    // The application is slow to give the partitions up: heartbeats continue meanwhile, and a
    // commit in this generation still goes through.
    let hb_before = s.sent[0]
        .iter()
        .filter(|a| **a == ApiKey::Heartbeat)
        .count();
    let now = s.now;
    s.members[0].commit(now, vec![CommitOffset::new("t", 0, 5)]);
    s.run(Duration::from_secs(3));
    let hb_after = s.sent[0]
        .iter()
        .filter(|a| **a == ApiKey::Heartbeat)
        .count();
    assert!(
        hb_after >= hb_before + 2,
        "heartbeats continued: {hb_before} -> {hb_after}"
    );
    assert_eq!(s.committed.get(&TopicPartition::new("t", 0)), Some(&5));
    let now = s.now;
    s.members[0].handle_revoked(now, token);
    assert!(s.run_until(Duration::from_secs(5), stable));
}

#[test]
fn stale_heartbeat_errors_are_ignored() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    // Hold the next heartbeat response, force a new generation, then deliver an
    // ILLEGAL_GENERATION for the old one: it must not reset the new generation.
    s.hold(ApiKey::Heartbeat, 1);
    s.fail_next(ApiKey::Heartbeat, ErrorCode::IllegalGeneration);
    s.run(Duration::from_millis(1100));
    let now = s.now;
    s.members[0].request_rejoin("test");
    s.members[0].handle_timeout(now);
    for _ in 0..50 {
        ack_revocations(&mut s);
        s.run(Duration::from_millis(100));
    }
    assert_eq!(s.members[0].phase(), Phase::Stable);
    let gen_now = s.members[0].generation();
    s.take_events(0);
    s.release();
    s.run(Duration::from_millis(200));
    assert_eq!(
        s.members[0].generation(),
        gen_now,
        "a stale ILLEGAL_GENERATION reset the generation"
    );
    assert!(
        !s.take_events(0)
            .iter()
            .any(|e| matches!(e, GroupEvent::Lost { .. }))
    );
}

#[test]
fn coordinator_move_is_followed() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    assert_eq!(s.members[0].coordinator(), Some(1));
    // The coordinator moves to broker 2: heartbeats to 1 get NOT_COORDINATOR, the member looks
    // it up again and heartbeats to 2 without leaving the generation.
    s.coordinator_id = 2;
    let gen_before = s.members[0].generation();
    s.run(Duration::from_secs(3));
    assert_eq!(s.members[0].coordinator(), Some(2));
    assert_eq!(s.members[0].generation(), gen_before);
    assert_eq!(s.members[0].phase(), Phase::Stable);
}

#[test]
fn commits_are_gated_by_generation_and_ownership() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    // Before joining: refused locally, nothing sent.
    let now = s.now;
    let id = s.members[0].commit(now, vec![CommitOffset::new("t", 0, 1)]);
    s.run(Duration::from_millis(50));
    let ev = s.take_events(0);
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Committed { id: i, result: Err(_) } if *i == id))
    );
    assert!(!s.sent[0].contains(&ApiKey::OffsetCommit));
    assert!(s.run_until(Duration::from_secs(5), stable));
    // A partition the member does not own is never committed.
    let now = s.now;
    s.members[0].commit(
        now,
        vec![
            CommitOffset::new("t", 1, 7),
            CommitOffset::new("other", 0, 9),
        ],
    );
    s.run(Duration::from_millis(100));
    assert_eq!(s.committed.get(&TopicPartition::new("t", 1)), Some(&7));
    assert!(!s.committed.contains_key(&TopicPartition::new("other", 0)));
}

#[test]
fn no_join_while_a_commit_is_in_flight() {
    let mut s = sim();
    let m = Member::new(
        cfg(),
        vec![Box::new(CooperativeSticky) as Box<dyn Balancer>],
        vec!["t".into()],
        s.now,
    );
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.hold(ApiKey::OffsetCommit, 1);
    let now = s.now;
    s.members[0].commit(now, vec![CommitOffset::new("t", 0, 3)]);
    s.members[0].request_rejoin("test");
    let joins_before = s.sent[0]
        .iter()
        .filter(|a| **a == ApiKey::JoinGroup)
        .count();
    s.run(Duration::from_secs(2));
    assert_eq!(
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::JoinGroup)
            .count(),
        joins_before,
        "JoinGroup sent while a commit was in flight"
    );
    s.release();
    s.run(Duration::from_secs(2));
    assert!(
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::JoinGroup)
            .count()
            > joins_before
    );
}

#[test]
fn commit_failure_during_a_rebalance_does_not_lose_the_assignment() {
    // librdkafka #4908: ILLEGAL_GENERATION on a commit while rebalancing must not be treated as
    // "assignment lost".
    let mut s = sim();
    let m = Member::new(
        cfg(),
        vec![Box::new(CooperativeSticky) as Box<dyn Balancer>],
        vec!["t".into()],
        s.now,
    );
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.take_events(0);
    s.hold(ApiKey::OffsetCommit, 1);
    s.fail_next(ApiKey::OffsetCommit, ErrorCode::IllegalGeneration);
    let now = s.now;
    s.members[0].commit(now, vec![CommitOffset::new("t", 0, 3)]);
    // A rebalance begins while the commit is in flight (the JoinGroup waits for it).
    s.members[0].request_rejoin("another member joined");
    s.run(Duration::from_millis(50));
    s.release();
    s.run(Duration::from_millis(50));
    let ev = s.take_events(0);
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Committed { result: Err(_), .. }))
    );
    assert!(
        !ev.iter().any(|e| matches!(e, GroupEvent::Lost { .. })),
        "{ev:?}"
    );
    // The rebalance goes on and the member keeps its generation's partitions.
    assert!(s.run_until(Duration::from_secs(5), stable));
    assert_eq!(s.members[0].assignment()["t"].len(), 6);
}

#[test]
fn commit_retriable_errors_are_retried_and_rebalance_in_progress_requests_rejoin() {
    let mut s = sim();
    let m = Member::new(
        cfg(),
        vec![Box::new(CooperativeSticky) as Box<dyn Balancer>],
        vec!["t".into()],
        s.now,
    );
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.fail_next(ApiKey::OffsetCommit, ErrorCode::CoordinatorLoadInProgress);
    let now = s.now;
    s.members[0].commit(now, vec![CommitOffset::new("t", 2, 11)]);
    s.run(Duration::from_secs(1));
    assert_eq!(
        s.committed.get(&TopicPartition::new("t", 2)),
        Some(&11),
        "retried after the backoff"
    );
    s.take_events(0);
    s.fail_next(ApiKey::OffsetCommit, ErrorCode::RebalanceInProgress);
    let now = s.now;
    s.members[0].commit(now, vec![CommitOffset::new("t", 2, 12)]);
    s.run(Duration::from_millis(100));
    let ev = s.take_events(0);
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Committed { result: Err(_), .. }))
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Rebalancing { .. })),
        "{ev:?}"
    );
}

#[test]
fn stalled_application_leaves_the_group_and_says_so() {
    let mut c = cfg();
    c.max_poll_interval = Duration::from_secs(3);
    let mut s = sim();
    let m = member(&s, c, Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.take_events(0);
    // Nobody polls: after max_poll_interval the member reports it, loses its partitions and
    // leaves (LeaveGroup, dynamic member).
    s.run(Duration::from_secs(4));
    let ev = s.take_events(0);
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Error(cohort::Error::PollTimeout { .. }))),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(e, GroupEvent::Lost { .. })));
    assert!(s.sent[0].contains(&ApiKey::LeaveGroup));
    assert_eq!(s.members[0].phase(), Phase::Unjoined);
    // Polling again rejoins.
    let now = s.now;
    s.members[0].handle_poll(now);
    assert!(s.run_until(Duration::from_secs(5), stable));
}

#[test]
fn static_members_do_not_leave_and_fencing_is_fatal() {
    let mut c = cfg();
    c.group_instance_id = Some("instance-a".into());
    let mut s = sim();
    let m = member(&s, c, Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    // Static members are given a member id without the MEMBER_ID_REQUIRED round.
    assert_eq!(
        s.sent[0]
            .iter()
            .filter(|a| **a == ApiKey::JoinGroup)
            .count(),
        1
    );
    let now = s.now;
    s.members[0].leave(now);
    s.run(Duration::from_millis(100));
    assert!(
        !s.sent[0].contains(&ApiKey::LeaveGroup),
        "static members never send LeaveGroup (KIP-345)"
    );
    assert!(s.take_events(0).contains(&GroupEvent::Left));

    let mut c = cfg();
    c.group_instance_id = Some("instance-b".into());
    let mut s = sim();
    let m = member(&s, c, Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.fail_next(ApiKey::Heartbeat, ErrorCode::FencedInstanceId);
    s.run(Duration::from_secs(2));
    assert_eq!(s.members[0].phase(), Phase::Failed);
    let ev = s.take_events(0);
    assert!(
        ev.iter()
            .any(|e| matches!(e, GroupEvent::Fatal(cohort::Error::Fenced { .. }))),
        "{ev:?}"
    );
}

/// Found on Apache Kafka: a member closing while a heartbeat was in flight got that heartbeat's
/// UNKNOWN_MEMBER_ID (the coordinator had already removed it) before its LeaveGroup answer. The
/// error moved it from Leaving back to Unjoined, the LeaveGroup answer was then ignored, and
/// `close` waited forever. Errors answered to a leaving member change nothing but what it owns.
#[test]
fn an_error_answered_while_leaving_does_not_keep_the_member_from_leaving() {
    for code in [
        ErrorCode::UnknownMemberId,
        ErrorCode::IllegalGeneration,
        ErrorCode::RebalanceInProgress,
        ErrorCode::NotCoordinator,
    ] {
        let mut s = sim();
        let m = member(&s, cfg(), Box::new(Range));
        s.add(m);
        assert!(s.run_until(Duration::from_secs(5), stable));
        // The next heartbeat is answered with `code`, and the answer is held back.
        s.fail_next(ApiKey::Heartbeat, code);
        s.hold(ApiKey::Heartbeat, 1);
        let before = s.sent[0].len();
        assert!(s.run_until(Duration::from_secs(3), |s| {
            s.sent[0][before..].contains(&ApiKey::Heartbeat)
        }));
        let now = s.now;
        s.members[0].leave(now);
        // The heartbeat's error arrives first, the LeaveGroup answer right after it.
        s.release();
        s.run(Duration::from_secs(2));
        assert_eq!(s.members[0].phase(), Phase::Left, "{code:?}");
        assert!(
            s.take_events(0).contains(&GroupEvent::Left),
            "{code:?}: no Left event"
        );
        assert!(s.sent[0].contains(&ApiKey::LeaveGroup), "{code:?}");
    }
}

#[test]
fn cooperative_members_revoke_only_what_moves_and_keep_the_rest() {
    let mut s = sim();
    let a = Member::new(
        cfg(),
        vec![Box::new(CooperativeSticky) as Box<dyn Balancer>],
        vec!["t".into()],
        s.now,
    );
    s.add(a);
    assert!(s.run_until(Duration::from_secs(5), stable));
    assert_eq!(s.members[0].assignment()["t"].len(), 6);
    s.take_events(0);
    // b joins: a keeps consuming through the rebalance and is asked to give up three.
    let b = Member::new(
        cfg(),
        vec![Box::new(CooperativeSticky) as Box<dyn Balancer>],
        vec!["t".into()],
        s.now,
    );
    s.add(b);
    let mut revoked = None;
    for _ in 0..200 {
        s.run(Duration::from_millis(50));
        for e in s.events[0].clone() {
            if let GroupEvent::Revoked {
                partitions, token, ..
            } = e
            {
                revoked = Some(partitions.clone());
                let now = s.now;
                s.members[0].handle_revoked(now, token);
            }
        }
        s.events[0].clear();
        if s.members
            .iter()
            .all(|m| m.phase() == Phase::Stable && count(m.assignment()) == 3)
        {
            break;
        }
    }
    let revoked = revoked.expect("a revoked a subset");
    assert_eq!(revoked["t"].len(), 3, "only what moves is revoked");
    assert_eq!(s.members[0].assignment()["t"].len(), 3);
    assert_eq!(s.members[1].assignment()["t"].len(), 3);
    let a_parts = &s.members[0].assignment()["t"];
    assert!(a_parts.is_disjoint(&revoked["t"]));
}

/// A cooperative join is two rounds (KIP-429): the first takes partitions from their owners,
/// which rejoin once they let go; the second gives them to the newcomer. A member that gave
/// nothing up hears of the second round only from a heartbeat: one goes out at a quarter of
/// the interval after a cooperative SyncGroup, not a whole interval later.
#[test]
fn after_a_cooperative_round_the_next_heartbeat_comes_early_so_the_follow_up_round_starts_at_once()
{
    let mut s = sim();
    let a = member(&s, cfg(), Box::new(CooperativeSticky));
    s.add(a);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.take_events(0);
    let b = member(&s, cfg(), Box::new(CooperativeSticky));
    s.add(b);
    // From b's first assignment (nothing: a still owns everything) until the group is split.
    let mut first_round = None;
    let mut split = None;
    for _ in 0..1000 {
        s.run(Duration::from_millis(10));
        ack_revocations(&mut s);
        s.events[0].clear();
        if first_round.is_none()
            && s.events[1]
                .iter()
                .any(|e| matches!(e, GroupEvent::Assigned { .. }))
        {
            first_round = Some(s.now);
        }
        if s.members
            .iter()
            .all(|m| m.phase() == Phase::Stable && count(m.assignment()) == 3)
        {
            split = Some(s.now);
            break;
        }
    }
    let first_round = first_round.expect("b got a first assignment");
    let took = split.expect("the group split") - first_round;
    // Heartbeat interval 1 s: the early heartbeat at 250 ms, answered REBALANCE_IN_PROGRESS,
    // then a JoinGroup and SyncGroup round.
    assert!(
        took < Duration::from_millis(600),
        "the second round took {took:?} after the first"
    );
}

#[test]
fn a_member_whose_sync_failed_rejoins_with_the_same_metadata() {
    // KIP-792: the subscription's generation says how old `owned_partitions` are, so it is the
    // generation of the last completed SyncGroup, not that of the JoinGroup. A SyncGroup that
    // fails leaves the member's partitions as they were, so its next JoinGroup repeats the
    // last one byte for byte: a coordinator comparing metadata sees no change (Kafka answers a
    // follower's unchanged rejoin of a stable group without a new rebalance; Tansu starts a new
    // generation for any change, which cost a whole extra round).
    let mut s = sim();
    let a = member(&s, cfg(), Box::new(CooperativeSticky));
    s.add(a);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let synced = s.members[0].generation();
    s.fail_next(ApiKey::SyncGroup, ErrorCode::RebalanceInProgress);
    s.members[0].request_rejoin("test");
    let now = s.now;
    s.members[0].handle_timeout(now);
    assert!(s.run_until(Duration::from_secs(5), |s| stable(s)
        && s.members[0].generation() > synced + 1));
    let joins = &s.join_metadata[0];
    let decode = |b: &bytes::Bytes| decode_subscription(b.clone()).expect("subscription").1;
    let n = joins.len();
    assert!(
        n >= 4,
        "MEMBER_ID_REQUIRED, first join, rejoin, rejoin after the failed sync"
    );
    // The join before the first SyncGroup claims nothing; the rejoin after it claims all six
    // at that SyncGroup's generation, and so does the join after the failed SyncGroup.
    assert_eq!(decode(&joins[n - 3]).generation_id, -1);
    let rejoin = decode(&joins[n - 2]);
    assert_eq!(rejoin.generation_id, synced);
    assert_eq!(rejoin.owned_partitions[0].partitions.len(), 6);
    assert_eq!(
        joins[n - 1],
        joins[n - 2],
        "the failed SyncGroup changed the metadata"
    );
    assert_eq!(count(s.members[0].assignment()), 6);
}

#[test]
fn session_expiry_of_a_member_rebalances_the_others() {
    let mut s = sim();
    let a = member(&s, cfg(), Box::new(Range));
    let b = member(&s, cfg(), Box::new(Range));
    s.add(a);
    s.add(b);
    assert!(s.run_until(Duration::from_secs(10), |s| stable(s)
        && s.group_members().len() == 2));
    // b stops talking (crashed): the fake expires it after the session timeout and a gets all.
    let mut b = s.members.pop().unwrap();
    s.events.pop();
    s.sent.pop();
    let _ = b.poll_request();
    run_until_stable_with(&mut s, 0, 6, 200);
}

#[test]
fn a_member_without_heartbeat_responses_for_a_session_gives_its_partitions_up_as_lost() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let id_before = s.members[0].member_id().to_owned();
    s.take_events(0);
    // The coordinator stops answering (a partition between member and broker, or a broker
    // restarting): after a whole session the coordinator may have expired the member, so its
    // partitions are lost, not revoked, and nothing is committed for them.
    unreachable(&mut s, true);
    s.run(Duration::from_millis(5_500));
    assert!(
        !s.take_events(0)
            .iter()
            .any(|e| matches!(e, GroupEvent::Lost { .. })),
        "not before the session timeout"
    );
    s.run(Duration::from_millis(1_500));
    let ev = s.take_events(0);
    assert!(
        ev.iter().any(|e| matches!(e, GroupEvent::Lost { .. })),
        "lost after the session timeout: {ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, GroupEvent::Revoked { .. })));
    assert_eq!(
        s.members[0].member_id(),
        id_before,
        "the member id is kept for the rejoin"
    );
    // The path heals. This coordinator still knows the member (it received the heartbeats, as
    // a coordinator that reloaded the group after a restart knows it), so the rejoin keeps the
    // id: no MEMBER_ID_REQUIRED round, and the partitions come back.
    let joins_before = joins(&s);
    unreachable(&mut s, false);
    ack_revocations(&mut s);
    assert!(s.run_until(Duration::from_secs(10), stable));
    assert_eq!(assigned(&s.take_events(0)), vec![6]);
    assert_eq!(s.members[0].member_id(), id_before);
    assert_eq!(
        joins(&s) - joins_before,
        1,
        "one JoinGroup with the kept id"
    );
}

/// Holds back (or, with `false`, delivers) every answer of the coordinator a member needs to
/// stay in or rejoin the group.
fn unreachable(s: &mut Sim, on: bool) {
    for api in [
        ApiKey::Heartbeat,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
    ] {
        s.hold(api, if on { 1000 } else { 0 });
    }
    if !on {
        s.release();
    }
}

fn joins(s: &Sim) -> usize {
    s.sent[0]
        .iter()
        .filter(|a| **a == ApiKey::JoinGroup)
        .count()
}

/// A coordinator that did expire the member answers the kept id with UNKNOWN_MEMBER_ID; the
/// member then joins with a new one.
#[test]
fn a_member_whose_session_expired_rejoins_with_a_new_id_when_the_coordinator_forgot_it() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let id_before = s.members[0].member_id().to_owned();
    unreachable(&mut s, true);
    s.run(Duration::from_millis(7_000));
    assert_eq!(s.members[0].member_id(), id_before);
    // The coordinator forgot the member: the JoinGroup with its id is refused.
    s.fail_next(ApiKey::JoinGroup, ErrorCode::UnknownMemberId);
    unreachable(&mut s, false);
    ack_revocations(&mut s);
    assert!(s.run_until(Duration::from_secs(10), |s| {
        stable(s) && s.members[0].member_id() != id_before
    }));
    assert_eq!(count(s.members[0].assignment()), 6);
}

#[test]
fn records_are_held_back_when_the_coordinator_has_been_silent_for_almost_a_session() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let until = s.members[0]
        .deliverable_until()
        .expect("a stable member has a limit");
    assert!(until > s.now, "deliverable while heartbeats are answered");
    s.hold(ApiKey::Heartbeat, 1000);
    // Session 6 s, heartbeat 1 s: after 5 s of silence the member holds records back, a
    // second before it would give the partitions up.
    s.run(Duration::from_millis(5_200));
    let until = s.members[0].deliverable_until().expect("still stable");
    assert!(
        s.now > until,
        "records held back after 5 s without an answer"
    );
    assert_eq!(s.members[0].phase(), Phase::Stable);
}

/// A member that gave its partitions up as lost keeps delivery closed while it has no
/// generation (a stable member's limit is in the test above): the application side may still
/// hold records of the lost partitions until it hears of the loss.
#[test]
fn delivery_stays_closed_once_the_partitions_are_lost_until_the_member_is_back_in_a_generation() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    s.hold(ApiKey::Heartbeat, 1000);
    s.hold(ApiKey::JoinGroup, 1);
    assert!(
        s.run_until(Duration::from_secs(10), |s| s.members[0]
            .assignment()
            .is_empty()),
        "the partitions are lost after a silent session"
    );
    let until = s.members[0]
        .deliverable_until()
        .expect("closed, not unlimited, while the member has no generation");
    assert!(until <= s.now, "nothing delivered after the loss");
}

/// The session is counted from when the last answered heartbeat was sent, not from when its
/// answer came: the coordinator restarted its count in between, so an answer that took 3 s
/// must not lend the member 3 s more of delivery than the coordinator grants.
#[test]
fn a_slow_heartbeat_answer_does_not_extend_delivery_past_the_coordinators_session() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    assert!(s.run_until(Duration::from_secs(5), stable));
    let held_from = s.now;
    s.hold(ApiKey::Heartbeat, 1);
    s.run(Duration::from_millis(3_000));
    s.release();
    // One tick: the held answer arrives; the next heartbeat is not answered yet.
    s.run(Duration::ZERO);
    let until = s.members[0].deliverable_until().expect("still stable");
    // The held heartbeat went out within one interval (1 s) of `held_from`; session 6 s,
    // margin 1 s. Counted from the answer, the limit would be `held_from` + 3 s + 5 s.
    assert!(
        until <= held_from + Duration::from_millis(6_000),
        "limit {:?} after the hold began",
        until - held_from
    );
    assert!(
        until > s.now,
        "an answered heartbeat keeps the member deliverable"
    );
}

/// A JoinGroup "success" without a generation (or member id) is not a generation: the member
/// reports it and rejoins, instead of syncing and later committing as generation -1 (found by
/// the `member` fuzz target).
#[test]
fn a_join_without_a_generation_is_an_error_not_a_generation() {
    use cohort::member::{OutboundRequest, Response};
    use cohort_protocol::messages::JoinGroupResponse;
    let now = sim().now;
    let mut m = Member::new(cfg(), vec![Box::new(Range)], vec!["t".into()], now);
    let find = m.poll_request().expect("FindCoordinator");
    assert!(matches!(find.request, OutboundRequest::FindCoordinator));
    m.handle_response(now, find.id, Ok(Response::Coordinator(1)));
    let join = m.poll_request().expect("JoinGroup");
    assert!(matches!(join.request, OutboundRequest::JoinGroup(_)));
    m.handle_response(
        now,
        join.id,
        Ok(Response::JoinGroup(JoinGroupResponse {
            generation_id: -1,
            member_id: "m-1".into(),
            leader: "m-1".into(),
            protocol_name: Some("range".into()),
            ..Default::default()
        })),
    );
    assert_eq!(m.phase(), Phase::Unjoined);
    assert_eq!(m.generation(), -1);
    let events: Vec<GroupEvent> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, GroupEvent::Error(_))),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, GroupEvent::Assigned { .. })),
        "{events:?}"
    );
    // No SyncGroup for it; the next request, after the backoff, is a new JoinGroup.
    assert!(
        std::iter::from_fn(|| m.poll_request())
            .all(|o| !matches!(o.request, OutboundRequest::SyncGroup(_)))
    );
    m.handle_timeout(now + Duration::from_secs(2));
    let again = m.poll_request().expect("a new JoinGroup");
    assert!(
        matches!(again.request, OutboundRequest::JoinGroup(_)),
        "{:?}",
        again.request
    );
}

/// A leader that closes while its Metadata request is out (the group dissolving around it):
/// the late Metadata answer must not put the member back into the rebalance, or the LeaveGroup
/// answer finds it "syncing", the leave never completes and `Consumer::close` waits for good
/// (seen as a 30 s close timeout in the librdkafka interop test).
#[test]
fn a_metadata_answer_after_leave_does_not_undo_the_leave() {
    let mut s = sim();
    let m = member(&s, cfg(), Box::new(Range));
    s.add(m);
    s.hold(ApiKey::Metadata, 1);
    assert!(
        s.run_until(Duration::from_secs(5), |s| s.members[0].phase()
            == Phase::Assigning),
        "the leader waits for its metadata"
    );
    s.run(Duration::from_millis(100));
    let now = s.now;
    s.members[0].leave(now);
    assert_eq!(s.members[0].phase(), Phase::Leaving);
    s.release();
    assert!(
        s.run_until(Duration::from_secs(5), |s| s.members[0].phase()
            == Phase::Left),
        "the member left; it is {:?}",
        s.members[0].phase()
    );
    assert!(
        s.take_events(0)
            .iter()
            .any(|e| matches!(e, GroupEvent::Left)),
        "Left was reported"
    );
    assert!(
        !s.sent[0].contains(&ApiKey::SyncGroup),
        "no SyncGroup after the leave: {:?}",
        s.sent[0]
    );
}

/// The APIs member `i` sent from index `from` of its log on.
fn sent_since(s: &Sim, i: usize, from: usize) -> Vec<ApiKey> {
    s.sent[i][from..].to_vec()
}

/// Member 0 (range, topic t) joins alone, leads and owns all six partitions; returns where its
/// request log stands.
fn lead_alone(s: &mut Sim) -> usize {
    let a = member(s, cfg(), Box::new(Range));
    s.add(a);
    run_until_stable_with(s, 0, 6, 100);
    s.sent[0].len()
}

/// Metadata requests in `log` before its first SyncGroup.
fn metadata_before_sync(log: &[ApiKey]) -> usize {
    let sync = log.iter().position(|a| *a == ApiKey::SyncGroup).unwrap();
    log[..sync]
        .iter()
        .filter(|a| **a == ApiKey::Metadata)
        .count()
}

/// Runs in 10 ms steps, acknowledging revocations, until `pred` holds after a step's requests
/// went out (before any answer to them came); whether it did within `limit`.
fn run_acking(s: &mut Sim, limit: Duration, pred: impl Fn(&Sim) -> bool) -> bool {
    let steps = limit.as_millis() / 10;
    for _ in 0..steps {
        ack_revocations(s);
        if s.run_until(Duration::from_millis(10), &pred) {
            return true;
        }
    }
    false
}

#[test]
fn a_leader_asks_for_the_groups_metadata_beside_its_join_group_and_plans_from_it() {
    // a leads a group of one; b joins. a hears of it at a heartbeat and rejoins: the Metadata
    // request must go out with its JoinGroup (before the broker can have answered it, which
    // waits for b), and the plan must follow the JoinGroup answer without another.
    let mut s = sim();
    let from = lead_alone(&mut s);
    let b = member(&s, cfg(), Box::new(Range));
    s.add(b);
    assert!(run_acking(&mut s, Duration::from_secs(5), |s| {
        sent_since(s, 0, from).contains(&ApiKey::JoinGroup)
    }));
    let log = sent_since(&s, 0, from);
    let join = log.iter().position(|a| *a == ApiKey::JoinGroup).unwrap();
    assert_eq!(
        log.get(join + 1),
        Some(&ApiKey::Metadata),
        "the metadata is asked for beside the JoinGroup: {log:?}"
    );
    run_until_stable_with(&mut s, 0, 3, 100);
    run_until_stable_with(&mut s, 1, 3, 100);
    let log = sent_since(&s, 0, from);
    assert_eq!(
        metadata_before_sync(&log),
        1,
        "one metadata request for the plan: {log:?}"
    );
}

#[test]
fn a_leaders_plan_waits_for_its_prefetch_when_the_join_group_is_answered_first() {
    // The prefetch still in flight when the JoinGroup answer comes: the plan neither starts
    // without it nor asks a second time, and goes on once it lands.
    let mut s = sim();
    let from = lead_alone(&mut s);
    // Only a asks for metadata: its prefetch is held past the JoinGroup answer.
    s.hold(ApiKey::Metadata, 1);
    let b = member(&s, cfg(), Box::new(Range));
    s.add(b);
    run_acking(&mut s, Duration::from_secs(3), |_| false);
    let log = sent_since(&s, 0, from);
    assert!(log.contains(&ApiKey::JoinGroup), "{log:?}");
    assert!(
        !log.contains(&ApiKey::SyncGroup),
        "no plan before the metadata: {log:?}"
    );
    assert_eq!(
        log.iter().filter(|a| **a == ApiKey::Metadata).count(),
        1,
        "the plan waits for the prefetch rather than asking again: {log:?}"
    );
    s.release();
    run_until_stable_with(&mut s, 0, 3, 100);
    run_until_stable_with(&mut s, 1, 3, 100);
}

#[test]
fn a_topic_the_prefetch_did_not_cover_is_asked_for_before_the_plan() {
    // a subscribes to t and leads; b joins subscribing to t and u. a's prefetch (the topics of
    // its last plan) lacks u, so the plan asks for the group's topics again, and b gets u.
    let mut s = Sim::new(vec![TopicInfo::new("t", 6), TopicInfo::new("u", 4)]);
    let from = lead_alone(&mut s);
    let b = Member::new(
        cfg(),
        vec![Box::new(Range)],
        vec!["t".into(), "u".into()],
        s.now,
    );
    s.add(b);
    run_until_stable_with(&mut s, 1, 7, 100);
    run_until_stable_with(&mut s, 0, 3, 100);
    let log = sent_since(&s, 0, from);
    assert_eq!(
        metadata_before_sync(&log),
        2,
        "the prefetch, then the group's topics: {log:?}"
    );
}
