//! The checker against real runs: a deliberately broken member (it commits revoked partitions
//! again after their new owner took them over) fails the run, and the same scenario without
//! the bug passes. Both run on the default broker (Apache Kafka) through the scenario runner.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::path::PathBuf;

use cohort_harness::runner::{self, RunOptions};
use cohort_harness::scenario::Scenario;

fn scenario(bug: bool) -> Scenario {
    // `b` starts alone and owns everything; two members join, so the cooperative plan takes
    // partitions away from `b`, which (with the bug) commits them again seven seconds later.
    let text = format!(
        r#"
        name = "commit-after-revoke"
        duration = "26s"
        seed = 1
        [[topics]]
        name = "t"
        partitions = 6
        [producer]
        rate = 200
        [defaults]
        balancers = ["cooperative-sticky"]
        [[members]]
        name = "b"
        {bug}
        [[members]]
        name = "m"
        count = 2
        start = false
        [[actions]]
        when = "stable"
        after = "2s"
        action = "join"
        target = "all"
        "#,
        bug = if bug {
            "bug = \"commit-after-revoke\""
        } else {
            ""
        }
    );
    Scenario::parse(&text).expect("scenario")
}

fn opts(name: &str) -> RunOptions {
    let mut o = RunOptions::new(
        std::env::temp_dir().join(format!("cohort-test-{name}-{}", std::process::id())),
        None,
    );
    o.progress = false;
    o.cohort_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_cohort")));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_commits_after_revoke_is_caught() {
    let report = runner::run(&scenario(true), &opts("bug"))
        .await
        .expect("the run completes");
    print!("{}", report.text());
    assert_eq!(report.verdict, "failed");
    let failed: Vec<&str> = report
        .analysis
        .as_ref()
        .unwrap()
        .findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| f.check.as_str())
        .collect();
    assert!(failed.contains(&"acts-only-while-owned"), "{failed:?}");
    // The broker accepted the stale commit, so the committed offset went backwards too.
    assert!(failed.contains(&"commits-never-go-backwards"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_group_without_the_bug_passes() {
    let report = runner::run(&scenario(false), &opts("nobug"))
        .await
        .expect("the run completes");
    print!("{}", report.text());
    assert_eq!(report.verdict, "passed");
    let a = report.analysis.as_ref().unwrap();
    assert!(a.produced > 1000, "only {} records produced", a.produced);
    // The join is one cooperative rebalance of two rounds.
    let join = a
        .rebalances
        .iter()
        .find(|r| r.trigger.starts_with("join"))
        .expect("the join rebalance is measured");
    assert_eq!(join.rounds, 2, "{join:?}");
}
