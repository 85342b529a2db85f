//! A group's steps as the broker saw them, from its request log (`kafka.request.logger` at
//! debug: `cohort_testbroker::BrokerOptions::request_log`), whichever client sent them.
//!
//! The rebalance benchmark splits each case at the moment the last member of the group heard
//! of the change. Before it, the members wait for their next heartbeat: the heartbeat interval
//! and where the change fell in their cycle decide that part, alike for every client. After it
//! comes the clients' own work: revocation and its commit, rejoining, the leader's plan,
//! SyncGroup, the offset fetch, the first fetch.
//!
//! Each line of a request log is the epoch milliseconds, then Kafka's `Completed request:`
//! JSON (`RequestChannel` in the broker: the request header, the request, the response and
//! the time it took).

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;

/// The error a member hears a rebalance by (`Errors.REBALANCE_IN_PROGRESS`).
const REBALANCE_IN_PROGRESS: i64 = 27;

/// What a request log says about one group.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GroupLog {
    /// (member id, epoch ms): responses that told the member the group rebalances (Heartbeat,
    /// SyncGroup, or OffsetCommit with `REBALANCE_IN_PROGRESS`), when sent.
    pub heard: Vec<(String, f64)>,
    /// (member id, epoch ms): JoinGroup requests with a member id, when received.
    pub rejoined: Vec<(String, f64)>,
    /// (member id, epoch ms): heartbeats answered without error, when answered.
    pub beats: Vec<(String, f64)>,
    /// (member id, epoch ms): LeaveGroup requests, when answered.
    pub left: Vec<(String, f64)>,
}

/// A timed case: its group, and its start and end in epoch milliseconds (the log's clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The group's id.
    pub group: String,
    /// When the change was made.
    pub from: f64,
    /// When the case ended (the group back at work).
    pub to: f64,
}

/// Reads the entries of `groups` from the request logs at `paths` (a missing file reads as
/// empty: the broker creates it on its first request).
pub fn read(paths: &[PathBuf], groups: &HashSet<&str>) -> HashMap<String, GroupLog> {
    let mut out = HashMap::new();
    for path in paths {
        let Ok(file) = std::fs::File::open(path) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            add_line(&line, groups, &mut out);
        }
    }
    out
}

/// Adds one line of a request log, if it is about one of `groups`.
pub fn add_line(line: &str, groups: &HashSet<&str>, out: &mut HashMap<String, GroupLog>) {
    // Most lines are fetches and produces: find a group of ours before parsing.
    const KEY: &str = "\"groupId\":\"";
    let Some(at) = line.find(KEY) else {
        return;
    };
    let Some(group) = line[at + KEY.len()..]
        .split('"')
        .next()
        .filter(|g| groups.contains(g))
    else {
        return;
    };
    let Some((ms, rest)) = line.split_once(' ') else {
        return;
    };
    let (Ok(done), Some(json)) = (ms.parse::<f64>(), rest.find('{').map(|i| &rest[i..])) else {
        return;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let entry = out.entry(group.to_owned()).or_default();
    let api = v["requestHeader"]["requestApiKeyName"].as_str();
    if api == Some("LEAVE_GROUP") {
        let members = v["request"]["members"].as_array().into_iter().flatten();
        entry
            .left
            .extend(members.filter_map(|m| Some((m["memberId"].as_str()?.to_owned(), done))));
        return;
    }
    let member = v["request"]["memberId"].as_str().unwrap_or("").to_owned();
    if member.is_empty() {
        return;
    }
    let rebalancing = |e: &serde_json::Value| e.as_i64() == Some(REBALANCE_IN_PROGRESS);
    let error = &v["response"]["errorCode"];
    let commit_refused = v["response"]["topics"].as_array().is_some_and(|ts| {
        ts.iter().any(|t| {
            t["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| rebalancing(&p["errorCode"])))
        })
    });
    match api {
        Some("HEARTBEAT" | "SYNC_GROUP") if rebalancing(error) => entry.heard.push((member, done)),
        Some("HEARTBEAT") if error.as_i64() == Some(0) => entry.beats.push((member, done)),
        Some("OFFSET_COMMIT") if commit_refused => entry.heard.push((member, done)),
        Some("JOIN_GROUP") => {
            let took = v["totalTimeMs"].as_f64().unwrap_or(0.0);
            entry.rejoined.push((member, done - took));
        }
        _ => {}
    }
}

/// Splits a case at the moment the last member of its group heard of the change (its first
/// response with `REBALANCE_IN_PROGRESS` within the case, or its JoinGroup if it rejoined
/// without one): (heard, after), in milliseconds. `None` when the log has nothing for it.
pub fn split(logs: &HashMap<String, GroupLog>, span: &Span) -> Option<(f64, f64)> {
    let log = logs.get(&span.group)?;
    // The log's clock has millisecond steps.
    let within = |t: f64| t >= span.from - 1.0 && t <= span.to + 1.0;
    let mut first: HashMap<&str, f64> = HashMap::new();
    for (member, t) in log.heard.iter().chain(&log.rejoined) {
        if within(*t) {
            let e = first.entry(member.as_str()).or_insert(*t);
            *e = e.min(*t);
        }
    }
    let last = first.values().copied().fold(f64::NAN, f64::max);
    last.is_finite().then(|| {
        let heard = (last - span.from).clamp(0.0, span.to - span.from);
        (heard, span.to - span.from - heard)
    })
}

/// How long the group would take to hear of a change made at a moment drawn uniformly from its
/// members' heartbeat cycle: the mean, over such moments, of the wait until the last member's
/// next heartbeat, from each member's heartbeats answered in the two seconds before the case
/// (its last one and its period), leaving out a member that leaves during the case. The benchmark changes the
/// group at fixed offsets from when each client reports it settled, which a member process
/// reports through a pipe and later than a member in the benchmark's process: the heard part
/// of a case depends on that offset, this does not. `None` without two heartbeats of a member.
pub fn expected_heard(logs: &HashMap<String, GroupLog>, span: &Span) -> Option<f64> {
    let log = logs.get(&span.group)?;
    let mut members: HashMap<&str, Vec<f64>> = HashMap::new();
    let leaves = |member: &str| {
        log.left
            .iter()
            .any(|(m, t)| m == member && *t >= span.from - 1.0 && *t <= span.to + 1.0)
    };
    for (member, t) in &log.beats {
        if *t < span.from && *t >= span.from - 2000.0 && !leaves(member) {
            members.entry(member.as_str()).or_default().push(*t);
        }
    }
    // (last heartbeat, period) of each member with at least two in the window.
    let cycles: Vec<(f64, f64)> = members
        .values_mut()
        .filter(|ts| ts.len() >= 2)
        .map(|ts| {
            ts.sort_by(f64::total_cmp);
            let mut gaps: Vec<f64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
            gaps.sort_by(f64::total_cmp);
            (ts[ts.len() - 1], gaps[gaps.len() / 2])
        })
        .filter(|(_, period)| *period > 0.0)
        .collect();
    let longest = cycles.iter().map(|c| c.1).fold(f64::NAN, f64::max);
    if !longest.is_finite() {
        return None;
    }
    const STEPS: usize = 1000;
    let total: f64 = (0..STEPS)
        .map(|k| {
            let at = span.from - longest + longest * (k as f64 + 0.5) / STEPS as f64;
            cycles
                .iter()
                .map(|(last, period)| (last - at).rem_euclid(*period))
                .fold(0.0, f64::max)
        })
        .sum();
    Some(total / STEPS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ms: u64, api: &str, body: &str) -> String {
        format!(
            "{ms} Completed request:{{\"requestHeader\":{{\"requestApiKeyName\":\"{api}\"}},{body},\"totalTimeMs\":2.0}}"
        )
    }

    fn heartbeat(ms: u64, member: &str, error: i64) -> String {
        line(
            ms,
            "HEARTBEAT",
            &format!(
                "\"request\":{{\"groupId\":\"g\",\"memberId\":\"{member}\"}},\"response\":{{\"errorCode\":{error}}}"
            ),
        )
    }

    fn parse(lines: &[String]) -> HashMap<String, GroupLog> {
        let groups = HashSet::from(["g"]);
        let mut out = HashMap::new();
        for l in lines {
            add_line(l, &groups, &mut out);
        }
        out
    }

    #[test]
    fn lines_of_other_groups_and_apis_are_left_out() {
        let logs = parse(&[
            heartbeat(1000, "a", 0),
            heartbeat(1001, "b", 27),
            line(
                1002,
                "HEARTBEAT",
                "\"request\":{\"groupId\":\"other\",\"memberId\":\"c\"},\"response\":{\"errorCode\":27}",
            ),
            line(
                1003,
                "JOIN_GROUP",
                "\"request\":{\"groupId\":\"g\",\"memberId\":\"b\"},\"response\":{\"errorCode\":0}",
            ),
            line(
                1004,
                "OFFSET_COMMIT",
                "\"request\":{\"groupId\":\"g\",\"memberId\":\"d\"},\"response\":{\"topics\":[{\"partitions\":[{\"errorCode\":27}]}]}",
            ),
            line(
                1005,
                "LEAVE_GROUP",
                "\"request\":{\"groupId\":\"g\",\"members\":[{\"memberId\":\"e\"}]},\"response\":{\"errorCode\":0}",
            ),
            "1006 Completed request:{\"requestHeader\":{\"requestApiKeyName\":\"FETCH\"}}".into(),
            "1007 Completed request:{\"groupId\":\"g\", not json".into(),
        ]);
        assert_eq!(logs.len(), 1);
        let g = &logs["g"];
        assert_eq!(g.beats, vec![("a".to_owned(), 1000.0)]);
        assert_eq!(
            g.heard,
            vec![("b".to_owned(), 1001.0), ("d".to_owned(), 1004.0)]
        );
        // A JoinGroup counts from its arrival: its completion less the time it took.
        assert_eq!(g.rejoined, vec![("b".to_owned(), 1001.0)]);
        assert_eq!(g.left, vec![("e".to_owned(), 1005.0)]);
    }

    #[test]
    fn a_case_splits_where_its_last_member_first_heard() {
        let logs = parse(&[
            heartbeat(900, "a", 27), // before the case: not this case's
            heartbeat(1100, "a", 27),
            heartbeat(1200, "a", 27), // a second hearing does not move a's moment
            heartbeat(1300, "b", 27),
            heartbeat(1350, "c", 0),
        ]);
        let span = Span {
            group: "g".into(),
            from: 1000.0,
            to: 1400.0,
        };
        assert_eq!(split(&logs, &span), Some((300.0, 100.0)));
        let elsewhere = Span {
            group: "h".into(),
            ..span
        };
        assert_eq!(split(&logs, &elsewhere), None);
    }

    #[test]
    fn the_expected_wait_follows_the_members_phases() {
        let span = Span {
            group: "g".into(),
            from: 2000.0,
            to: 2500.0,
        };
        // Members in step: the wait for the next heartbeat is half the period on average.
        let together = parse(&[500, 1000, 1500].map(|t| heartbeat(t, "a", 0)));
        let wait = expected_heard(&together, &span).unwrap();
        assert!((wait - 250.0).abs() < 1.0, "{wait}");
        // Two members half a period apart: the later of their next heartbeats, 375 ms on
        // average.
        let apart = parse(
            &[
                (500, "a"),
                (1000, "a"),
                (1500, "a"),
                (750, "b"),
                (1250, "b"),
                (1750, "b"),
            ]
            .map(|(t, m)| heartbeat(t, m, 0)),
        );
        let wait = expected_heard(&apart, &span).unwrap();
        assert!((wait - 375.0).abs() < 1.0, "{wait}");
        // A member that leaves in the case is not waited for; one that left later is.
        let mut left = apart.clone();
        left.get_mut("g").unwrap().left.push(("b".into(), 9000.0));
        let wait = expected_heard(&left, &span).unwrap();
        assert!((wait - 375.0).abs() < 1.0, "{wait}");
        left.get_mut("g").unwrap().left.push(("b".into(), 2001.0));
        let wait = expected_heard(&left, &span).unwrap();
        assert!((wait - 250.0).abs() < 1.0, "{wait}");
        assert_eq!(
            expected_heard(&parse(&[heartbeat(1500, "a", 0)]), &span),
            None
        );
    }
}
