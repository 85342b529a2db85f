//! Network faults in the kernel, on members in network namespaces of their own: the shipped
//! `kernel-network` scenario on the default broker (Apache Kafka). A librdkafka member has no
//! dialer the harness could fault, so its partitions are lost to the black hole only if the
//! kernel dropped its packets; a cohort member whose inbound segments are dropped loses its
//! partitions the same way. The namespaces and the bridge are gone after the run. Needs root
//! (network namespaces, veth, nftables), as CI has.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::path::PathBuf;

use cohort_harness::runner::{self, RunOptions};
use cohort_harness::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_in_the_kernel_reach_members_of_every_client() {
    let text = runner::load("kernel-network").expect("shipped scenario");
    let scenario = Scenario::parse(&text).expect("scenario");
    let mut opts = RunOptions::new(
        std::env::temp_dir().join(format!("cohort-test-kernel-{}", std::process::id())),
        Some(20261204),
    );
    opts.progress = false;
    opts.cohort_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_cohort")));
    let report = runner::run(&scenario, &opts)
        .await
        .expect("the run completes");
    print!("{}", report.text());
    assert_eq!(report.verdict, "passed");
    for (kind, n) in [("blackhole", 1), ("cut", 2), ("loss", 2), ("drop", 2)] {
        assert_eq!(
            report.faults.get(kind),
            Some(&n),
            "{kind}: {:?}",
            report.faults
        );
    }
    for m in ["cn1", "cn2", "rn"] {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with(&format!("{m}: network faults applied in the kernel"))),
            "{m}: {:?}",
            report.notes
        );
    }
    let a = report.analysis.as_ref().expect("analysis");
    let lost = |who: &str| {
        a.intervals
            .iter()
            .any(|i| i.member == who && i.ended_by == "lost")
    };
    // The black hole (rn) and the cuts (cn1 outbound, cn2 inbound) outlast the 6 s session.
    for m in ["rn", "cn1", "cn2"] {
        assert!(
            lost(m),
            "{m} never lost its partitions: the fault did not reach it"
        );
    }
    // Nothing left behind: no namespace or bridge of this process.
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let mine = format!("cohort-{}-", std::process::id());
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&mine),
        "namespaces left: {}",
        String::from_utf8_lossy(&netns.stdout)
    );
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .expect("ip link show");
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!("cb{}-", std::process::id())),
        "bridge left"
    );
}
