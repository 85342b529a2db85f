//! The checks, one function each: what Apache Kafka does, asked of the broker under test. One
//! responsibility, however long: each check is a short script against the bare member in
//! `raw.rs`, and they read best side by side.

use std::time::{Duration, Instant};

use cohort::unstable::{Cluster, Target};
use cohort::{ProducerRecord, TopicPartition};
use cohort_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsRequest,
    consumer_group_heartbeat_request,
};
use cohort_protocol::{ApiKey, ErrorCode};

use super::raw::{
    Code, Raw, SESSION_MS, TIMEOUT, code, expect_ok, heartbeat_until_change, name,
    rejoin_on_rebalance, rejoin_on_rebalance_with, topic, topic_with_records,
};
use super::{Addr, Outcome};

// The checks.

pub(super) async fn api_versions(b: Addr) -> Outcome {
    let cluster = Cluster::new(b.config());
    let need: &[(ApiKey, i16)] = &[
        (ApiKey::Metadata, 1),
        (ApiKey::FindCoordinator, 1),
        (ApiKey::JoinGroup, 4),
        (ApiKey::SyncGroup, 0),
        (ApiKey::Heartbeat, 0),
        (ApiKey::LeaveGroup, 3),
        (ApiKey::OffsetCommit, 2),
        (ApiKey::OffsetFetch, 1),
        (ApiKey::ListOffsets, 1),
        (ApiKey::Fetch, 4),
        (ApiKey::Produce, 3),
    ];
    let mut missing = Vec::new();
    for (api, v) in need {
        if !cluster
            .supports(Target::Any, *api, *v)
            .await
            .map_err(|e| format!("ApiVersions: {e}"))?
        {
            missing.push(format!("{api:?} v{v}+"));
        }
    }
    if missing.is_empty() {
        Ok(format!("all {} APIs at the needed versions", need.len()))
    } else {
        Err(format!("missing: {}", missing.join(", ")))
    }
}

pub(super) async fn unsupported_version(b: Addr) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = b.bootstrap.split(',').next().unwrap_or(&b.bootstrap);
    // Through the configured dialer, so the check runs over TLS too; a SASL listener answers
    // ApiVersions before authentication (KIP-43).
    let mut s = tokio::time::timeout(Duration::from_secs(10), b.config().dialer.dial(addr))
        .await
        .map_err(|_| "no connection within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    // ApiVersions (18) at version 99, correlation id 7, client id "c". ApiVersions v3+ is
    // flexible, so its request header is v2: the client id, then (empty) tagged fields. A
    // broker parses the header by the version the request names, known or not (Kafka's
    // `RequestHeader.parse`), and answers an unknown ApiVersions version with a v0 response:
    // UNSUPPORTED_VERSION and the versions it supports (KIP-511).
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&99i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b'c');
    body.push(0);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 10];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            let corr = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let err = i16::from_be_bytes([head[8], head[9]]);
            if corr == 7 && err == 35 {
                Ok("answered UNSUPPORTED_VERSION (35) with the supported range".to_owned())
            } else {
                Err(format!("answered correlation {corr}, error {err}"))
            }
        }
        Ok(Err(e)) => Err(format!("no answer: the connection was closed ({e})")),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}

pub(super) async fn member_id_required(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 1).await?;
    let m = Raw::new(&b, &name("g"), &t).await?;
    let r = m.join_once(&["range"], 30_000).await?;
    if code(r.error_code).is(ErrorCode::MemberIdRequired) && !r.member_id.is_empty() {
        Ok(format!("MEMBER_ID_REQUIRED with id {}", r.member_id))
    } else {
        Err(format!(
            "answered {} with member id {:?}",
            code(r.error_code),
            r.member_id.as_str()
        ))
    }
}

pub(super) async fn join_sync_heartbeat(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 1).await?;
    let mut m = Raw::new(&b, &name("g"), &t).await?;
    let start = Instant::now();
    let r = m.join(&["range"], 30_000).await?;
    if r.leader != r.member_id {
        return Err("a lone member is not its group's leader".into());
    }
    let s = m.sync(&r).await?;
    expect_ok("SyncGroup", s.error_code)?;
    let want = format!("for-{}", m.member_id);
    if s.assignment.as_ref() != want.as_bytes() {
        return Err(format!(
            "SyncGroup returned {:?}, not the leader's assignment",
            s.assignment
        ));
    }
    let hb = m.heartbeat().await?;
    if hb != Code::NONE {
        return Err(format!("heartbeat answered {hb}"));
    }
    Ok(format!(
        "generation {} formed in {} ms",
        m.generation,
        start.elapsed().as_millis()
    ))
}

pub(super) async fn two_members(b: &Addr, t: &str) -> Outcome<(Raw, Raw)> {
    let group = name("g");
    let mut a = Raw::new(b, &group, t).await?;
    a.solo().await?;
    let mut c = Raw::new(b, &group, t).await?;
    // c's JoinGroup is held until a rejoins; a learns of it through its heartbeat.
    let join_c = async {
        let r = c.join(&["range"], 30_000).await?;
        Ok::<_, String>((c, r))
    };
    let rejoin_a = rejoin_on_rebalance(a, Duration::from_secs(15), "first member");
    let (jc, ja) = tokio::join!(join_c, rejoin_a);
    let ((c, rc), (a, ra)) = (jc?, ja?);
    let (sa, sc) = tokio::join!(a.sync(&ra), c.sync(&rc));
    expect_ok("SyncGroup", sa?.error_code)?;
    expect_ok("SyncGroup", sc?.error_code)?;
    Ok((a, c))
}

pub(super) async fn rebalance_on_join(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let start = Instant::now();
    let (a, c) = two_members(&b, &t).await?;
    if a.generation != c.generation {
        return Err(format!(
            "generations differ: {} and {}",
            a.generation, c.generation
        ));
    }
    Ok(format!(
        "both in generation {} after {} ms",
        a.generation,
        start.elapsed().as_millis()
    ))
}

pub(super) async fn leave_triggers_rebalance(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (a, c) = two_members(&b, &t).await?;
    let lc = c.leave().await?;
    if lc != Code::NONE {
        return Err(format!("LeaveGroup answered {lc}"));
    }
    let (hb, took) = heartbeat_until_change(&a, Duration::from_secs(10)).await?;
    if hb.is(ErrorCode::RebalanceInProgress) {
        Ok(format!(
            "REBALANCE_IN_PROGRESS {} ms after the leave",
            took.as_millis()
        ))
    } else {
        Err(format!(
            "heartbeat answered {hb} for {} ms",
            took.as_millis()
        ))
    }
}

pub(super) async fn session_expiry(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (mut a, c) = two_members(&b, &t).await?;
    drop(c);
    let start = Instant::now();
    let (hb, _) = heartbeat_until_change(&a, Duration::from_secs(20)).await?;
    if !hb.is(ErrorCode::RebalanceInProgress) {
        return Err(format!(
            "heartbeat answered {hb} for {} ms",
            start.elapsed().as_millis()
        ));
    }
    let r = a.join(&["range"], 30_000).await?;
    let took = start.elapsed();
    if r.members.len() == 1 {
        Ok(format!(
            "the silent member was removed; the group re-formed {} ms after its last heartbeat (session {} ms)",
            took.as_millis(),
            SESSION_MS
        ))
    } else {
        Err(format!("the group still has {} members", r.members.len()))
    }
}

pub(super) async fn rebalance_timeout_expiry(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let group = name("g");
    let rebalance_ms = 3_000;
    let mut a = Raw::new(&b, &group, &t).await?;
    let ra = a.join(&["range"], rebalance_ms).await?;
    expect_ok("SyncGroup", a.sync(&ra).await?.error_code)?;
    // c joins; a keeps heartbeating (answered REBALANCE_IN_PROGRESS) but never rejoins.
    let mut c = Raw::new(&b, &group, &t).await?;
    let start = Instant::now();
    let join_c = c.join(&["range"], rebalance_ms);
    let keep_a = async {
        loop {
            let _ = a.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let limit = Duration::from_millis(rebalance_ms as u64) + Duration::from_secs(10);
    tokio::select! {
        r = join_c => {
            let r = r?;
            let took = start.elapsed().as_millis();
            if r.leader == r.member_id && r.members.len() == 1 {
                Ok(format!("the member that did not rejoin was removed; JoinGroup completed after {took} ms (rebalance timeout {rebalance_ms} ms)"))
            } else if r.leader == r.member_id {
                Err(format!("JoinGroup completed after {took} ms with {} members, including the one that did not rejoin", r.members.len()))
            } else {
                Err(format!("JoinGroup completed after {took} ms naming {} as leader: the member that did not rejoin is still in the generation", r.leader))
            }
        }
        () = keep_a => unreachable!(),
        () = tokio::time::sleep(limit) => Err(format!("no JoinGroup answer within {} ms: a heartbeating member that does not rejoin holds the group", limit.as_millis())),
    }
}

pub(super) async fn leader_rejoin_rebalances(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (a, c) = two_members(&b, &t).await?;
    let (mut leader, follower) = if a.leader { (a, c) } else { (c, a) };
    let before = leader.generation;
    // A stable group: both members heartbeat for a while first.
    for _ in 0..4 {
        let _ = tokio::join!(leader.heartbeat(), follower.heartbeat());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The leader rejoins with the same metadata, as a leader that saw a topic grow does. The
    // follower learns of it through its heartbeat and rejoins too.
    let rejoin_leader = leader.join(&["range"], 30_000);
    let follower_side = async {
        let (hb, took) = heartbeat_until_change(&follower, Duration::from_secs(10)).await?;
        Ok::<_, String>((hb, took))
    };
    let (rl, fs) = tokio::join!(
        async { tokio::time::timeout(Duration::from_secs(15), rejoin_leader).await },
        follower_side
    );
    let (hb, took) = fs?;
    match rl {
        Ok(Ok(r)) if r.generation_id > before && hb.is(ErrorCode::RebalanceInProgress) => {
            Ok(format!(
                "generation {before} -> {} ; the follower heard REBALANCE_IN_PROGRESS after {} ms",
                r.generation_id,
                took.as_millis()
            ))
        }
        Ok(Ok(r)) => Err(format!(
            "the leader's JoinGroup was answered with generation {} (was {before}); the follower's heartbeat answered {hb} for {} ms",
            r.generation_id,
            took.as_millis()
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the leader's JoinGroup was not answered; the follower's heartbeat answered {hb}"
        )),
    }
}

pub(super) async fn leader_leaves_mid_rebalance(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (a, c) = two_members(&b, &t).await?;
    let (leader, mut follower) = if a.leader { (a, c) } else { (c, a) };
    if !leader.leader {
        return Err("neither member was told it leads".into());
    }
    // A third member starts a rebalance; the follower rejoins, the leader leaves instead.
    let mut third = Raw::new(&b, &follower.group, &t).await?;
    let join3 = third.join(&["range"], 30_000);
    let rejoin = async {
        let (hb, _) = heartbeat_until_change(&follower, Duration::from_secs(15)).await?;
        if !hb.is(ErrorCode::RebalanceInProgress) {
            return Err(format!("heartbeat answered {hb}"));
        }
        follower.join(&["range"], 30_000).await
    };
    // The old leader (whichever it was) leaves during the rebalance.
    let leave = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        leader.leave().await
    };
    let (r3, rf, lv) = tokio::join!(join3, rejoin, leave);
    let (r3, rf) = (r3?, rf?);
    lv?;
    let leader_id = rf.leader.to_string();
    if leader_id != follower.member_id && leader_id != third.member_id {
        return Err(format!(
            "JoinGroup names {leader_id} as leader, a member that left"
        ));
    }
    let (s1, s2) = tokio::join!(follower.sync(&rf), third.sync(&r3));
    let (c1, c2) = (code(s1?.error_code), code(s2?.error_code));
    if c1 == Code::NONE && c2 == Code::NONE {
        Ok(format!(
            "a remaining member was elected; generation {} completed",
            follower.generation
        ))
    } else {
        Err(format!("SyncGroup answered {c1} and {c2}"))
    }
}

pub(super) async fn protocol_vote(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let group = name("g");
    let mut a = Raw::new(&b, &group, &t).await?;
    let mut c = Raw::new(&b, &group, &t).await?;
    // a alone: its first choice.
    let r1 = a.join(&["range", "roundrobin"], 30_000).await?;
    expect_ok("SyncGroup", a.sync(&r1).await?.error_code)?;
    let alone = r1.protocol_name.as_deref().unwrap_or("").to_owned();
    // c supports only roundrobin; a rejoins with both. The coordinator must pick, for the
    // generation they form together, a protocol both support (Kafka's
    // `ClassicGroup.selectProtocol`: candidates every member supports, then a vote by each
    // member's preference).
    let (rc, ra) = tokio::join!(
        c.join(&["roundrobin"], 30_000),
        rejoin_on_rebalance_with(a, &["range", "roundrobin"], Duration::from_secs(12), "a")
    );
    let rc = rc.map_err(|e| format!("c was refused: {e}"))?;
    let (_a, ra) = ra?;
    let (pa, pc) = (
        ra.protocol_name.as_deref().unwrap_or(""),
        rc.protocol_name.as_deref().unwrap_or(""),
    );
    if ra.generation_id != rc.generation_id {
        return Err(format!(
            "a and c were answered in generations {} and {}",
            ra.generation_id, rc.generation_id
        ));
    }
    if pa == "roundrobin" && pc == "roundrobin" {
        Ok(format!(
            "a alone ran {alone:?}; with c (roundrobin only), generation {} chose roundrobin",
            rc.generation_id
        ))
    } else {
        Err(format!(
            "generation {} chose {pa:?}/{pc:?}, which one member does not support",
            rc.generation_id
        ))
    }
}

pub(super) async fn static_fencing(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 1).await?;
    let group = name("g");
    let instance = name("instance");
    let mut a = Raw::new(&b, &group, &t).await?;
    a.instance = Some(instance.clone());
    a.solo().await?;
    let mut a2 = Raw::new(&b, &group, &t).await?;
    a2.instance = Some(instance);
    let r2 = a2.join(&["range"], 30_000).await?;
    let _ = a2.sync(&r2).await;
    let hb = a.heartbeat().await?;
    if hb.is(ErrorCode::FencedInstanceId) {
        Ok("the old member's heartbeat answered FENCED_INSTANCE_ID".into())
    } else {
        Err(format!(
            "the old member's heartbeat answered {hb} (member ids {} and {})",
            a.member_id, a2.member_id
        ))
    }
}

pub(super) async fn static_member_rejoin(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let group = name("g");
    let mut a = Raw::new(&b, &group, &t).await?;
    a.solo().await?;
    let mut st = Raw::new(&b, &group, &t).await?;
    st.instance = Some(name("static"));
    // The static member joins (a rebalance with a), then rejoins as a restarted process does:
    // no member id, the same instance id, new metadata (here: another topic list).
    let form = |a: Raw, st: Raw, topics: Option<String>| async move {
        let (a, mut st) = (a, st);
        if let Some(t2) = topics {
            st.member_id.clear();
            st.topic = t2;
        }
        let join_st = async {
            let r = st.join(&["range"], 30_000).await?;
            Ok::<_, String>((st, r))
        };
        let rejoin_a = rejoin_on_rebalance(a, Duration::from_secs(12), "the dynamic member");
        let (js, ja) = tokio::join!(join_st, rejoin_a);
        let ((st, rs), (a, ra)) = (js?, ja?);
        let (ss, sa) = tokio::join!(st.sync(&rs), a.sync(&ra));
        let (cs, ca) = (code(ss?.error_code), code(sa?.error_code));
        if cs != Code::NONE || ca != Code::NONE {
            return Err(format!(
                "SyncGroup answered {cs} (static) and {ca} (dynamic) in generation {}",
                st.generation
            ));
        }
        Ok((a, st))
    };
    let start = Instant::now();
    let (a, st) = form(a, st, None).await?;
    let first = st.generation;
    // The restart. Kafka answers a known static member that rejoins a stable group with the
    // current generation and no rebalance unless the group's protocol would change
    // (`GroupMetadataManager.updateStaticMemberThenRebalanceOrCompleteJoin`, KIP-345); another
    // broker may rebalance instead. Either way the dynamic member follows what its heartbeats
    // say, and the check asks that both end in a generation they completed.
    let mut st = st;
    st.member_id.clear();
    st.topic = format!("{t}-other");
    let done = std::sync::atomic::AtomicBool::new(false);
    let follow = async {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut a = a;
        loop {
            let hb = a.heartbeat().await?;
            if hb.is(ErrorCode::RebalanceInProgress) {
                let r = a.join(&["range"], 30_000).await?;
                let s = a.sync(&r).await?;
                expect_ok("the dynamic member's SyncGroup", s.error_code)?;
                return Ok::<_, String>((a, true));
            }
            if hb != Code::NONE {
                return Err(format!("the dynamic member's heartbeat answered {hb}"));
            }
            if done.load(std::sync::atomic::Ordering::SeqCst) || Instant::now() > deadline {
                return Ok((a, false));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let rejoin = async {
        let r = st.join(&["range"], 30_000).await?;
        let s = st.sync(&r).await?;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let c = code(s.error_code);
        if c != Code::NONE {
            return Err(format!(
                "the restarted static member's SyncGroup answered {c} in generation {}",
                st.generation
            ));
        }
        Ok::<_, String>(())
    };
    let (fa, rs) = tokio::join!(follow, rejoin);
    rs?;
    let (a, rebalanced) = fa?;
    let (ha, hs) = (a.heartbeat().await?, st.heartbeat().await?);
    if ha == Code::NONE && hs == Code::NONE {
        Ok(format!(
            "generation {first} -> {}{} completed by both, {} ms",
            st.generation,
            if rebalanced {
                " (a rebalance)"
            } else {
                " (no rebalance, KIP-345)"
            },
            start.elapsed().as_millis()
        ))
    } else {
        Err(format!(
            "after the rejoin: generation {first} -> {}, heartbeats {ha} (dynamic) and {hs} (static)",
            st.generation
        ))
    }
}

pub(super) async fn stale_generation(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (a, _c) = two_members(&b, &t).await?;
    let hb = a.heartbeat_at(a.generation - 1).await?;
    if hb.is(ErrorCode::IllegalGeneration) {
        Ok("ILLEGAL_GENERATION".into())
    } else {
        Err(format!("answered {hb}"))
    }
}

pub(super) async fn stale_commit(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 2).await?;
    let (a, _c) = two_members(&b, &t).await?;
    let c = a.commit_at(a.generation - 1, 1).await?;
    if c.is(ErrorCode::IllegalGeneration) {
        Ok("ILLEGAL_GENERATION".into())
    } else {
        Err(format!("answered {c}"))
    }
}

pub(super) async fn offset_commit_fetch(b: Addr) -> Outcome {
    let (p, t) = topic(&b, 2).await?;
    let recs: Vec<ProducerRecord> = (0..50)
        .map(|i| ProducerRecord::value(format!("{i}")))
        .collect();
    p.send(&t, 0, &recs)
        .await
        .map_err(|e| format!("Produce: {e}"))?;
    let mut a = Raw::new(&b, &name("g"), &t).await?;
    a.solo().await?;
    let c = a.commit_at(a.generation, 42).await?;
    if c != Code::NONE {
        return Err(format!("OffsetCommit answered {c}"));
    }
    let got = cohort::unstable::fetch_committed(
        &a.cluster,
        &a.group,
        &[TopicPartition::new(&t, 0), TopicPartition::new(&t, 1)],
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| format!("OffsetFetch: {e}"))?;
    let (p0, p1) = (
        got.get(&TopicPartition::new(&t, 0)).copied().flatten(),
        got.get(&TopicPartition::new(t, 1)).copied().flatten(),
    );
    if p0 == Some(42) && p1.is_none() {
        Ok("42 fetched back; -1 for the uncommitted partition".into())
    } else {
        Err(format!("fetched {p0:?} and {p1:?}"))
    }
}

pub(super) async fn list_offsets_latest(b: Addr) -> Outcome {
    let (p, t) = topic(&b, 1).await?;
    for _ in 0..3 {
        let recs: Vec<ProducerRecord> = (0..5)
            .map(|i| ProducerRecord::value(format!("{i}")))
            .collect();
        p.send(&t, 0, &recs)
            .await
            .map_err(|e| format!("Produce: {e}"))?;
    }
    let ends = p
        .end_offsets(&t)
        .await
        .map_err(|e| format!("ListOffsets: {e}"))?;
    match ends.get(&0) {
        Some(15) => Ok("15 after 3 batches of 5".into()),
        other => Err(format!(
            "{other:?} after 3 batches of 5 (the log end is 15)"
        )),
    }
}

pub(super) async fn fetch_inside_batch(b: Addr) -> Outcome {
    let (p, t) = topic_with_records(&b, 10).await?;
    let got = p
        .read(&t, 0, 5, Duration::from_secs(3))
        .await
        .map_err(|e| format!("Fetch: {e}"))?;
    let offsets: Vec<i64> = got.iter().map(|r| r.0).filter(|o| *o >= 5).collect();
    if offsets.first() == Some(&5) && offsets.len() == 5 {
        Ok("offsets 5..=9 returned".into())
    } else {
        Err(format!("returned offsets {offsets:?}"))
    }
}

pub(super) async fn fetch_beyond_end(b: Addr) -> Outcome {
    let (p, t) = topic_with_records(&b, 5).await?;
    match p.read(&t, 0, 50, Duration::from_millis(500)).await {
        Err(cohort::Error::Broker {
            code: ErrorCode::OffsetOutOfRange,
            ..
        }) => Ok("OFFSET_OUT_OF_RANGE for offset 50 of a 5-record log".into()),
        Err(e) => Err(format!("answered {e}")),
        Ok(records) => Err(format!(
            "answered without an error ({} records) for offset 50 of a 5-record log",
            records.len()
        )),
    }
}

/// Clients fetch with no wait when they must not block (cohort does while some partitions are
/// held back for full buffers); Kafka then answers with what is there.
pub(super) async fn fetch_max_wait_zero(b: Addr) -> Outcome {
    let (p, t) = topic_with_records(&b, 5).await?;
    let got = p
        .read(&t, 0, 0, Duration::ZERO)
        .await
        .map_err(|e| format!("Fetch: {e}"))?;
    if got.len() == 5 {
        return Ok("5 records at once".into());
    }
    let with_1ms = p
        .read(&t, 0, 0, Duration::from_millis(1))
        .await
        .map_err(|e| format!("Fetch: {e}"))?;
    Err(format!(
        "answered {} of 5 records (with max_wait_ms = 1 the same Fetch returns {})",
        got.len(),
        with_1ms.len()
    ))
}

pub(super) async fn create_partitions(b: Addr) -> Outcome {
    let (p, t) = topic(&b, 2).await?;
    p.create_partitions(&t, 4)
        .await
        .map_err(|e| e.to_string())?;
    let n = p.partitions(&t).await.map_err(|e| e.to_string())?;
    if n == 4 {
        Ok("grew 2 to 4".into())
    } else {
        Err(format!("{n} partitions after growing to 4"))
    }
}

pub(super) async fn describe_groups(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 1).await?;
    let mut a = Raw::new(&b, &name("g"), &t).await?;
    a.solo().await?;
    let req = DescribeGroupsRequest {
        groups: vec![a.group.clone().into()],
        ..Default::default()
    };
    let r = a
        .cluster
        .send(a.target(), &req, Duration::from_secs(10))
        .await
        .map_err(|e| format!("DescribeGroups: {e}"))?;
    let g = r.groups.first().ok_or("no group described")?;
    let m = g.members.first().ok_or("no member described")?;
    if g.protocol_data.is_empty() || m.member_assignment.is_empty() || m.client_id.is_empty() {
        Err(format!(
            "state {:?}, protocol {:?}, client id {:?}, assignment {} bytes",
            g.group_state.as_str(),
            g.protocol_data.as_str(),
            m.client_id.as_str(),
            m.member_assignment.len()
        ))
    } else {
        Ok(format!(
            "state {}, protocol {}",
            g.group_state, g.protocol_data
        ))
    }
}

/// One ConsumerGroupHeartbeat of a raw KIP-848 member. A coordinator still loading its
/// partition of `__consumer_offsets` (a broker that has just started) is asked again, as every
/// client does with COORDINATOR_LOAD_IN_PROGRESS, for up to 15 s.
async fn heartbeat_848(
    cluster: &Cluster,
    coord: i32,
    req: &ConsumerGroupHeartbeatRequest,
) -> Outcome<ConsumerGroupHeartbeatResponse> {
    let mut attempts = 0;
    let r = loop {
        let r = cluster
            .send(Target::Coordinator(coord), req, TIMEOUT)
            .await
            .map_err(|e| format!("ConsumerGroupHeartbeat: {e}"))?;
        attempts += 1;
        if ErrorCode::check(r.error_code) != Err(ErrorCode::CoordinatorLoadInProgress)
            || attempts >= 75
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match ErrorCode::check(r.error_code) {
        Ok(()) => Ok(r),
        Err(code) => Err(format!(
            "ConsumerGroupHeartbeat answered {code} ({})",
            r.error_message.as_deref().unwrap_or("")
        )),
    }
}

fn partitions_of(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        let mut ps: Vec<i32> = a
            .topic_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect();
        ps.sort_unstable();
        ps
    })
}

pub(super) async fn consumer_protocol(b: Addr) -> Outcome {
    let (_p, t) = topic(&b, 4).await?;
    let group = name("kip848");
    let cluster = Cluster::new(b.config());
    let coord = cluster
        .find_coordinator(&group)
        .await
        .map_err(|e| format!("FindCoordinator: {e}"))?;
    let join = |id: &str| ConsumerGroupHeartbeatRequest {
        group_id: group.clone().into(),
        member_id: id.to_owned().into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec![t.clone().into()]),
        topic_partitions: Some(Vec::new()),
        ..Default::default()
    };
    let deadline = Instant::now() + TIMEOUT;
    // A joins alone: an epoch and all four partitions (the broker may take a round to
    // compute the target, so heartbeat until they come).
    let mut a = heartbeat_848(&cluster, coord, &join("member-a-0000000000000")).await?;
    let mut a_parts = partitions_of(&a).unwrap_or_default();
    while a_parts.len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hb = ConsumerGroupHeartbeatRequest {
            group_id: group.clone().into(),
            member_id: "member-a-0000000000000".into(),
            member_epoch: a.member_epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        a = heartbeat_848(&cluster, coord, &hb).await?;
        if let Some(ps) = partitions_of(&a) {
            a_parts = ps;
        }
    }
    if a.member_epoch <= 0 || a_parts.len() != 4 || a.heartbeat_interval_ms <= 0 {
        return Err(format!(
            "member a: epoch {}, partitions {a_parts:?}, interval {} ms",
            a.member_epoch, a.heartbeat_interval_ms
        ));
    }
    let topic_id = a
        .assignment
        .as_ref()
        .and_then(|x| x.topic_partitions.first())
        .map(|tp| tp.topic_id);
    let owned = |ps: &[i32]| {
        topic_id.map(|topic_id| {
            vec![consumer_group_heartbeat_request::TopicPartitions {
                topic_id,
                partitions: ps.to_vec(),
                ..Default::default()
            }]
        })
    };
    let a_topic = owned(&a_parts);
    // A acknowledges owning all four.
    let ack = ConsumerGroupHeartbeatRequest {
        group_id: group.clone().into(),
        member_id: "member-a-0000000000000".into(),
        member_epoch: a.member_epoch,
        rebalance_timeout_ms: -1,
        topic_partitions: a_topic.clone(),
        ..Default::default()
    };
    a = heartbeat_848(&cluster, coord, &ack).await?;
    // B joins: while A still reports all four, B must get none of them.
    let bm = heartbeat_848(&cluster, coord, &join("member-b-0000000000000")).await?;
    let b_first = partitions_of(&bm).unwrap_or_default();
    if !b_first.is_empty() {
        return Err(format!(
            "member b got {b_first:?} while member a still owned all four partitions"
        ));
    }
    // A's next heartbeat brings its new target (two partitions): it releases the others.
    let mut a_target = a_parts.clone();
    while a_target.len() == 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hb = ConsumerGroupHeartbeatRequest {
            group_id: group.clone().into(),
            member_id: "member-a-0000000000000".into(),
            member_epoch: a.member_epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        a = heartbeat_848(&cluster, coord, &hb).await?;
        if let Some(ps) = partitions_of(&a) {
            a_target = ps;
        }
    }
    if a_target.len() != 2 {
        return Err(format!("member a's target after b joined: {a_target:?}"));
    }
    let release = ConsumerGroupHeartbeatRequest {
        group_id: group.clone().into(),
        member_id: "member-a-0000000000000".into(),
        member_epoch: a.member_epoch,
        rebalance_timeout_ms: -1,
        topic_partitions: owned(&a_target),
        ..Default::default()
    };
    heartbeat_848(&cluster, coord, &release).await?;
    let mut b_parts = Vec::new();
    let mut b_epoch = bm.member_epoch;
    while b_parts.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hb = ConsumerGroupHeartbeatRequest {
            group_id: group.clone().into(),
            member_id: "member-b-0000000000000".into(),
            member_epoch: b_epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let r = heartbeat_848(&cluster, coord, &hb).await?;
        b_epoch = r.member_epoch;
        if let Some(ps) = partitions_of(&r) {
            b_parts = ps;
        }
    }
    let disjoint = b_parts.iter().all(|p| !a_target.contains(p));
    if b_parts.len() != 2 || !disjoint {
        return Err(format!(
            "member b got {b_parts:?} after a released; a kept {a_target:?}"
        ));
    }
    let leave = ConsumerGroupHeartbeatRequest {
        group_id: group.clone().into(),
        member_id: "member-b-0000000000000".into(),
        member_epoch: -1,
        rebalance_timeout_ms: -1,
        ..Default::default()
    };
    let left = heartbeat_848(&cluster, coord, &leave).await?;
    if left.member_epoch != -1 {
        return Err(format!(
            "a leave with epoch -1 was answered epoch {}",
            left.member_epoch
        ));
    }
    Ok(format!(
        "a: epoch {} with {a_parts:?}, then {a_target:?}; b: {b_parts:?} once a released them; b's leave answered epoch -1",
        a.member_epoch
    ))
}
