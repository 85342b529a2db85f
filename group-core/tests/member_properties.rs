//! The member state machine under random fault scripts (failed responses, withheld answers,
//! coordinator moves, commits, leaves and rejoins at any moment), against the scripted fake
//! coordinator in virtual time. After every step: a member that left or failed stays so, none
//! fails on retriable errors. After the script, with the faults lifted: every member that was not
//! told to leave is stable in one generation, their assignments are disjoint and cover every
//! partition, every member told to leave has left, and every commit got its answer.
//!
//! This is the check that would have caught a leader's late Metadata answer undoing its leave
//! (`member.rs::a_metadata_answer_after_leave_does_not_undo_the_leave`).

use std::collections::BTreeSet;
use std::time::Duration;

use cohort::member::{CommitOffset, GroupEvent, Member, MemberConfig, Phase};
use cohort::testing::Sim;
use cohort_balancers::{Balancer, CooperativeSticky, Range, TopicInfo};
use cohort_protocol::{ApiKey, ErrorCode};
use proptest::prelude::*;

const PARTITIONS: i32 = 6;

/// The answers a script may withhold.
const HELD: [ApiKey; 7] = [
    ApiKey::FindCoordinator,
    ApiKey::Metadata,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::OffsetCommit,
    ApiKey::LeaveGroup,
];

fn cfg(i: usize) -> MemberConfig {
    let mut c = MemberConfig::new("g");
    c.session_timeout = Duration::from_secs(6);
    c.rebalance_timeout = Duration::from_secs(10);
    c.heartbeat_interval = Duration::from_secs(1);
    c.max_poll_interval = Duration::from_secs(600);
    c.request_timeout = Duration::from_secs(5);
    c.retry_backoff = Duration::from_millis(100);
    c.retry_backoff_max = Duration::from_secs(1);
    c.rack = Some(format!("r{i}"));
    c.jitter_seed = i as u64;
    c
}

#[derive(Debug, Clone)]
enum Op {
    Run(u64),
    Fail(ApiKey, ErrorCode),
    Hold(ApiKey),
    Release,
    MoveCoordinator,
    Commit(usize),
    Leave(usize),
    Rejoin(usize),
    /// A new member joins (cooperative or not): the members already there revoke what moves.
    Join(bool),
}

fn op(members: usize) -> impl Strategy<Value = Op> {
    let api = prop::sample::select(vec![
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::OffsetCommit,
    ]);
    let held = prop::sample::select(HELD.to_vec());
    // Retriable or recoverable answers only: none of them may fail a member.
    let code = prop::sample::select(vec![
        ErrorCode::RebalanceInProgress,
        ErrorCode::UnknownMemberId,
        ErrorCode::IllegalGeneration,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::CoordinatorLoadInProgress,
    ]);
    prop_oneof![
        4 => (10u64..3_000).prop_map(Op::Run),
        2 => (api, code).prop_map(|(a, c)| Op::Fail(a, c)),
        1 => held.prop_map(Op::Hold),
        1 => Just(Op::Release),
        1 => Just(Op::MoveCoordinator),
        2 => (0..members).prop_map(Op::Commit),
        1 => (0..members).prop_map(Op::Leave),
        1 => (0..members).prop_map(Op::Rejoin),
        1 => any::<bool>().prop_map(Op::Join),
    ]
}

/// The application around the members: acknowledges revocations and losses, and records the
/// answers to commits.
struct App {
    seen: Vec<usize>,
    commits: Vec<BTreeSet<u64>>,
    answered: Vec<BTreeSet<u64>>,
}

impl App {
    fn react(&mut self, s: &mut Sim) {
        for i in 0..s.members.len() {
            let new: Vec<GroupEvent> = s.events[i][self.seen[i]..].to_vec();
            self.seen[i] = s.events[i].len();
            for e in new {
                match e {
                    GroupEvent::Revoked { token, .. } | GroupEvent::Lost { token, .. } => {
                        let now = s.now;
                        s.members[i].handle_revoked(now, token);
                    }
                    GroupEvent::Committed { id, .. } => {
                        self.answered[i].insert(id);
                    }
                    _ => {}
                }
            }
        }
    }

    fn run(&mut self, s: &mut Sim, d: Duration) {
        let end = s.now + d;
        while s.now < end {
            s.run(Duration::from_millis(50));
            self.react(s);
        }
    }
}

/// Members a script may grow the group to.
const MAX_MEMBERS: usize = 5;

fn add_member(s: &mut Sim, app: &mut App, told_to_leave: &mut Vec<bool>, cooperative: bool) {
    let i = s.members.len();
    // Cooperative members run cooperative-sticky alone (a member listing an eager balancer too
    // runs the eager protocol, as Java's does); eager ones list both, Range first, so the group
    // always has a common protocol, and a mixed group is the first bounce of an upgrade.
    let balancers: Vec<Box<dyn Balancer>> = if cooperative {
        vec![Box::new(CooperativeSticky)]
    } else {
        vec![Box::new(Range), Box::new(CooperativeSticky)]
    };
    let m = Member::new(cfg(i), balancers, vec!["t".into()], s.now);
    s.add(m);
    app.seen.push(0);
    app.commits.push(BTreeSet::new());
    app.answered.push(BTreeSet::new());
    told_to_leave.push(false);
}

fn check_terminal(s: &Sim, before: &[Phase]) -> Result<(), TestCaseError> {
    for (i, m) in s.members.iter().enumerate() {
        let now = m.phase();
        prop_assert!(now != Phase::Failed, "member {i} failed");
        if before.get(i) == Some(&Phase::Left) {
            prop_assert_eq!(now, Phase::Left, "member {} came back after leaving", i);
        }
    }
    Ok(())
}

fn script(members: usize) -> impl Strategy<Value = (Vec<bool>, Vec<Op>)> {
    (
        prop::collection::vec(any::<bool>(), members),
        prop::collection::vec(op(members), 1..40),
    )
}

fn run_script(cooperative: Vec<bool>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut s = Sim::new(vec![TopicInfo::new("t", PARTITIONS as u32)]);
    // Unanswered requests time out, as the driver makes them.
    s.timeouts = true;
    let mut app = App {
        seen: Vec::new(),
        commits: Vec::new(),
        answered: Vec::new(),
    };
    let mut told_to_leave = Vec::new();
    for coop in cooperative {
        add_member(&mut s, &mut app, &mut told_to_leave, coop);
    }
    for o in ops {
        let before: Vec<Phase> = s.members.iter().map(Member::phase).collect();
        let now = s.now;
        match o {
            Op::Run(ms) => app.run(&mut s, Duration::from_millis(ms)),
            Op::Fail(api, code) => s.fail_next(api, code),
            Op::Hold(api) => s.hold(api, 1),
            Op::Release => s.release(),
            Op::MoveCoordinator => s.coordinator_id += 1,
            Op::Commit(i) => {
                let offsets: Vec<CommitOffset> = s.members[i]
                    .assignment()
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(|&p| CommitOffset::new(t.clone(), p, 1)))
                    .collect();
                let id = s.members[i].commit(now, offsets);
                app.commits[i].insert(id);
            }
            Op::Leave(i) => {
                told_to_leave[i] = true;
                s.members[i].leave(now);
            }
            Op::Rejoin(i) => s.members[i].request_rejoin("the application asked"),
            Op::Join(coop) => {
                if s.members.len() < MAX_MEMBERS {
                    add_member(&mut s, &mut app, &mut told_to_leave, coop);
                }
            }
        }
        app.react(&mut s);
        check_terminal(&s, &before)?;
    }

    // The faults lift: withheld answers arrive, nothing more is scripted to fail (the scripted
    // failures left over are consumed by the retries), and the group settles.
    for api in HELD {
        s.hold(api, 0);
    }
    s.release();
    let n = s.members.len();
    let staying: Vec<usize> = (0..n).filter(|&i| !told_to_leave[i]).collect();
    let mut settled = false;
    for _ in 0..240 {
        app.run(&mut s, Duration::from_millis(500));
        let generations: BTreeSet<i32> =
            staying.iter().map(|&i| s.members[i].generation()).collect();
        let assigned: usize = staying
            .iter()
            .map(|&i| {
                s.members[i]
                    .assignment()
                    .values()
                    .map(BTreeSet::len)
                    .sum::<usize>()
            })
            .sum();
        if staying
            .iter()
            .all(|&i| s.members[i].phase() == Phase::Stable)
            && generations.len() <= 1
            && (staying.is_empty() || assigned == PARTITIONS as usize)
            && told_to_leave
                .iter()
                .enumerate()
                .all(|(i, &l)| !l || s.members[i].phase() == Phase::Left)
        {
            settled = true;
            break;
        }
    }
    let phases: Vec<Phase> = s.members.iter().map(Member::phase).collect();
    prop_assert!(
        settled,
        "the group did not settle in 120 s without faults: phases {:?}, told to leave {:?}",
        phases,
        told_to_leave
    );
    let mut owned = BTreeSet::new();
    for &i in &staying {
        for (t, ps) in s.members[i].assignment() {
            for &p in ps {
                prop_assert!(owned.insert((t.clone(), p)), "{t}-{p} owned twice");
            }
        }
    }
    // Commits still waiting for a retry get their answer within their attempts' backoff.
    app.run(&mut s, Duration::from_secs(10));
    for i in 0..n {
        let missing: Vec<u64> = app.commits[i]
            .difference(&app.answered[i])
            .copied()
            .collect();
        prop_assert!(
            missing.is_empty(),
            "member {i}: commits never answered: {missing:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_fault_scripts_keep_the_member_invariants((coop, ops) in script(3)) {
        run_script(coop, ops)?;
    }

    #[test]
    fn a_single_member_survives_random_fault_scripts((coop, ops) in script(1)) {
        run_script(coop, ops)?;
    }
}
