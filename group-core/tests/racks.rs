//! `client.rack` with rack-aware assignment (KIP-881: range, sticky and cooperative-sticky) on a
//! three-node Apache Kafka cluster whose nodes are in racks of their own: each member gets as
//! many partitions whose replica is in its rack as its share allows.
#![allow(
    clippy::disallowed_methods,
    reason = "integration tests read the clock and do I/O"
)]

mod common;

use std::time::Duration;

use cohort::unstable::Cluster;
use cohort::{ClientConfig, Consumer, Producer};
use cohort_balancers::{Balancer, CooperativeSticky, Range, Sticky};
use cohort_testbroker::{Backend, BrokerKind, BrokerOptions, TestBroker};
use common::{group_config, unique_name};

/// Every rack-aware balancer on one cluster (a three-node cluster takes about 10 s to start),
/// one group and topic each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_get_the_partitions_of_their_rack() {
    let mut o = BrokerOptions::default()
        .kind(BrokerKind::ApacheKafka)
        .backend(Backend::Process)
        .nodes(3);
    o.racks = true;
    let broker = TestBroker::start_with(o).expect("three nodes in three racks");
    let balancers: [(&str, NewBalancer); 3] = [
        ("range", || Box::new(Range)),
        ("sticky", || Box::new(Sticky::default())),
        ("cooperative-sticky", || Box::new(CooperativeSticky)),
    ];
    for (name, balancer) in balancers {
        rack_matched_group(&broker, name, balancer).await;
    }
}

type NewBalancer = fn() -> Box<dyn Balancer>;

async fn rack_matched_group(broker: &TestBroker, name: &str, balancer: NewBalancer) {
    let (topic, group) = (unique_name("racks"), unique_name("g"));
    // One replica per partition: each partition is in exactly one rack.
    Producer::new(ClientConfig::new(broker.bootstrap()))
        .create_topic(&topic, 6, 1)
        .await
        .expect("topic");
    let cluster = Cluster::new(ClientConfig::new(broker.bootstrap()));
    cluster
        .refresh_metadata(Some(std::slice::from_ref(&topic)))
        .await
        .expect("metadata");
    let leader = |p: i32| cluster.leader(&topic, p).expect("a leader");
    let mut members = Vec::new();
    for node in broker.node_ids() {
        let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], balancer());
        cfg.client.rack = Some(format!("rack-{node}"));
        members.push((node, Consumer::new(cfg).await.expect("consumer")));
    }
    let owned = |c: &Consumer| -> Vec<i32> {
        c.assignment()
            .get(&topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let settled = members.iter().all(|(_, c)| owned(c).len() == 2);
        if settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: not settled: {:?}",
            members
                .iter()
                .map(|(n, c)| (n, owned(c)))
                .collect::<Vec<_>>()
        );
        for (_, c) in &mut members {
            let _ = tokio::time::timeout(Duration::from_millis(50), c.recv()).await;
        }
    }
    // Kafka places single replicas over the racks unevenly at times (two, three, one...), and
    // every balancer gives every member two partitions: a rack with more than two leaves the rest to
    // members of other racks. So the check is that every member takes as many of its rack's
    // partitions as it can: min(2, the rack's partitions) each.
    let mut per_rack: std::collections::BTreeMap<i32, usize> = Default::default();
    for p in 0..6 {
        *per_rack.entry(leader(p)).or_default() += 1;
    }
    for (node, c) in &members {
        let mine = owned(c);
        let matched = mine.iter().filter(|&&p| leader(p) == *node).count();
        let possible = per_rack.get(node).copied().unwrap_or(0).min(2);
        assert_eq!(
            matched,
            possible,
            "{name}: member in rack-{node} got {mine:?} (replicas on nodes {:?}); the racks hold {per_rack:?}",
            mine.iter().map(|&p| leader(p)).collect::<Vec<_>>()
        );
    }
    for (_, c) in members {
        c.abort();
    }
}
