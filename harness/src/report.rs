//! Reports of a run: JSON for machines, a short text for people, and a picture: an SVG
//! timeline (one lane per partition coloured by its owner, faults, rebalances, throughput)
//! wrapped in a self-contained HTML page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::{Analysis, Interval};
use crate::journal::{Entry, Event};

/// Everything a report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What it exercises.
    pub description: String,
    /// Seed of the run.
    pub seed: u64,
    /// The broker that ran it.
    pub broker: BrokerReport,
    /// Passed, failed, or not run (and why); in JSON `verdict` (`passed`, `failed`,
    /// `not-run`) and `not_run_reason`.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Run length (ms).
    pub duration_ms: u64,
    /// Members and their clients.
    pub members: BTreeMap<String, String>,
    /// Notes (emulated actions, departures of the broker).
    pub notes: Vec<String>,
    /// The checker's findings and measures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Processed and produced records per second.
    pub throughput: Vec<ThroughputPoint>,
    /// Timeline actions as they happened (ms from the start).
    pub actions: Vec<(u64, String)>,
    /// Faults injected, by kind (see [`fault_counts`]).
    pub faults: BTreeMap<String, u64>,
}

/// The faults of a run's timeline by kind: every `chaos` entry that starts one (not the end
/// of a lasting fault), leaving out the actions that only bring things back (`join`, `heal`,
/// `broker-start`) and pure triggers (`wait`).
pub fn fault_counts(entries: &[Entry]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in entries {
        if let Event::Chaos { action, detail, .. } = &e.event
            && detail != "end"
            && !matches!(action.as_str(), "join" | "heal" | "broker-start" | "wait")
        {
            *out.entry(action.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// What broker a run used: `"broker": {"kind": "apache-kafka", "version": "4.4.0", ...}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokerReport {
    /// `apache-kafka`, `tansu` or `external`.
    pub kind: String,
    /// The broker's version (`null` for an external cluster, whose version is not known).
    pub version: Option<String>,
    /// `process`, `container` or `external`.
    pub backend: String,
    /// Nodes started (0 for an external cluster).
    pub nodes: usize,
    /// Bootstrap address.
    pub bootstrap: String,
    /// Details: process ids, image.
    pub description: String,
}

impl BrokerReport {
    /// The report of a running broker.
    pub fn of(b: &cohort_testbroker::TestBroker) -> Self {
        let info = b.info();
        Self {
            kind: info.kind.clone(),
            version: info.version.clone(),
            backend: info.backend.to_string(),
            nodes: info.nodes,
            bootstrap: info.bootstrap.clone(),
            description: b.description().to_owned(),
        }
    }
}

impl std::fmt::Display for BrokerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.kind.as_str() {
            "apache-kafka" => "Apache Kafka",
            "tansu" => "Tansu",
            _ => "an external cluster",
        };
        f.write_str(name)?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        if self.nodes > 1 {
            write!(f, ", {} nodes", self.nodes)?;
        }
        write!(f, " ({}, {})", self.backend, self.bootstrap)
    }
}

/// Records per second at a point of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThroughputPoint {
    /// Seconds from the start.
    pub t: u64,
    /// Records produced in that second.
    pub produced: u64,
    /// Records processed in that second.
    pub processed: u64,
}

/// Per-second throughput from the journal.
pub fn throughput(entries: &[Entry], start: u64, end: u64) -> Vec<ThroughputPoint> {
    let n = (end.saturating_sub(start) / 1_000_000 + 1) as usize;
    let mut out: Vec<ThroughputPoint> = (0..n)
        .map(|t| ThroughputPoint {
            t: t as u64,
            produced: 0,
            processed: 0,
        })
        .collect();
    for e in entries {
        let i = (e.ts.saturating_sub(start) / 1_000_000) as usize;
        let Some(p) = out.get_mut(i) else { continue };
        match &e.event {
            Event::Produced { first, last, .. } => p.produced += (last - first + 1) as u64,
            Event::Processed { first, last, .. } => p.processed += (last - first + 1) as u64,
            _ => {}
        }
    }
    out
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Passed,
    /// A check failed.
    Failed,
    /// The broker lacks what the scenario needs; nothing was run.
    NotRun {
        /// What the broker lacks.
        reason: String,
    },
}

impl Verdict {
    /// `passed`, `failed` or `not-run`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotRun { .. } => "not-run",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the JSON name (`report.verdict == "passed"`).
impl PartialEq<&str> for Verdict {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Repr<'a> {
            verdict: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            not_run_reason: Option<&'a str>,
        }
        let not_run_reason = match self {
            Verdict::NotRun { reason } => Some(reason.as_str()),
            _ => None,
        };
        Repr {
            verdict: self.as_str(),
            not_run_reason,
        }
        .serialize(s)
    }
}

impl Report {
    /// Whether the run passed (a run that was not run did not fail).
    pub fn ok(&self) -> bool {
        self.verdict != Verdict::Failed
    }

    /// The short text summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} (seed {}) on {}: {}",
            self.scenario,
            self.seed,
            self.broker,
            self.verdict.as_str().to_uppercase()
        );
        if let Verdict::NotRun { reason: r } = &self.verdict {
            let _ = writeln!(s, "  not run: {r}");
            return s;
        }
        let _ = writeln!(
            s,
            "  {:.1} s, members: {}",
            self.duration_ms as f64 / 1000.0,
            self.members
                .iter()
                .map(|(m, c)| format!("{m} ({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.faults.is_empty() {
            let _ = writeln!(
                s,
                "  {} faults: {}",
                self.faults.values().sum::<u64>(),
                self.faults
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(a) = &self.analysis {
            let _ = writeln!(
                s,
                "  produced {} records, processed {} distinct, {} duplicate deliveries",
                a.produced, a.processed, a.duplicates.total
            );
            for f in &a.findings {
                let _ = writeln!(
                    s,
                    "  [{}] {}: {}",
                    if f.passed { "ok" } else { "FAIL" },
                    f.check,
                    f.summary
                );
                for ev in &f.evidence {
                    let _ = writeln!(s, "         - {ev}");
                }
            }
            if !a.rebalances.is_empty() {
                let lat: Vec<u64> = a.rebalances.iter().map(|r| r.latency_ms).collect();
                let max = lat.iter().max().copied().unwrap_or(0);
                let mut sorted = lat.clone();
                sorted.sort_unstable();
                let median = sorted[sorted.len() / 2];
                let _ = writeln!(
                    s,
                    "  {} rebalances: latency median {} ms, max {} ms",
                    a.rebalances.len(),
                    median,
                    max
                );
                for r in &a.rebalances {
                    let _ = writeln!(
                        s,
                        "    at {:>6.1}s {:<28} {:>6} ms, {} round(s)",
                        r.trigger_ms as f64 / 1000.0,
                        r.trigger,
                        r.latency_ms,
                        r.rounds
                    );
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }

    /// Writes `report.json`, `summary.txt`, `timeline.svg` and `report.html` into `dir`.
    pub fn write(&self, dir: &Path, entries: &[Entry], start: u64) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self).unwrap_or_default(),
        )?;
        std::fs::write(dir.join("summary.txt"), self.text())?;
        let svg = self.svg(entries, start);
        std::fs::write(dir.join("timeline.svg"), &svg)?;
        std::fs::write(dir.join("report.html"), self.html(&svg))?;
        // The journal itself, for replay and for tools of one's own.
        let mut lines = String::new();
        for e in entries {
            lines.push_str(&serde_json::to_string(e).unwrap_or_default());
            lines.push('\n');
        }
        std::fs::write(dir.join("journal.jsonl"), lines)?;
        Ok(())
    }

    fn html(&self, svg: &str) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>cohort: {name}</title>\n\
             <style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}\
             pre{{background:#f6f6f6;padding:12px;overflow-x:auto}}\
             .passed{{color:#1a7f37}}.failed{{color:#c62828}}.not-run{{color:#8a6d00}}</style></head>\n\
             <body><h1>{name} <span class=\"{verdict}\">{verdict}</span></h1>\n<p>{desc}</p>\n{svg}\n\
             <h2>Summary</h2><pre>{text}</pre></body></html>\n",
            name = esc(&self.scenario),
            verdict = self.verdict.as_str(),
            desc = esc(&self.description),
            text = esc(&self.text()),
        )
    }

    /// The timeline picture.
    pub fn svg(&self, entries: &[Entry], start: u64) -> String {
        timeline_svg(self, entries, start)
    }
}

/// Distinct colours for members (Okabe-Ito and Tableau, readable on white).
const PALETTE: &[&str] = &[
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#4E79A7",
    "#F28E2B", "#59A14F", "#B07AA1", "#9C755F", "#EDC948", "#76B7B2", "#FF9DA7", "#BAB0AC",
];

fn timeline_svg(r: &Report, entries: &[Entry], start: u64) -> String {
    let empty = Vec::new();
    let intervals: &Vec<Interval> = r.analysis.as_ref().map_or(&empty, |a| &a.intervals);
    let end_ms = r.duration_ms.max(1);
    let mut lanes: Vec<(String, i32)> = intervals
        .iter()
        .map(|i| (i.topic.clone(), i.partition))
        .collect();
    lanes.sort();
    lanes.dedup();
    let members: Vec<&String> = r.members.keys().collect();
    let colour = |m: &str| {
        members
            .iter()
            .position(|x| x.as_str() == m)
            .map_or("#999", |i| PALETTE[i % PALETTE.len()])
    };
    let (left, width) = (150.0, 1000.0);
    let lane_h = if lanes.len() > 40 { 8.0 } else { 14.0 };
    let top = 60.0;
    let lanes_h = lanes.len() as f64 * lane_h;
    let tp_top = top + lanes_h + 50.0;
    let tp_h = 120.0;
    let height = tp_top + tp_h + 50.0 + 18.0 * ((members.len() as f64) / 3.0).ceil();
    let x = |ms: u64| left + width * (ms.min(end_ms) as f64) / end_ms as f64;
    let ms_of = |ts: u64| ts.saturating_sub(start) / 1000;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{name}: {verdict} (seed {seed})</text>\n",
        w = left + width + 40.0,
        h = height,
        name = xml(&r.scenario),
        verdict = r.verdict.as_str(),
        seed = r.seed
    );
    // Rebalances: shaded bands behind the lanes.
    if let Some(a) = &r.analysis {
        for rb in &a.rebalances {
            let (x0, x1) = (x(rb.start_ms), x(rb.end_ms));
            let _ = writeln!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{lanes_h}\" fill=\"#eee\"><title>rebalance after {}: {} ms, {} round(s)</title></rect>",
                (x1 - x0).max(1.0),
                xml(&rb.trigger),
                rb.latency_ms,
                rb.rounds
            );
        }
    }
    // Lanes.
    for (i, (t, p)) in lanes.iter().enumerate() {
        let y = top + i as f64 * lane_h;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"{}\">{}/{}</text>",
            left - 6.0,
            y + lane_h * 0.8,
            if lane_h < 10.0 { 7 } else { 10 },
            xml(t),
            p
        );
        for iv in intervals
            .iter()
            .filter(|iv| &iv.topic == t && iv.partition == *p)
        {
            let (x0, x1) = (x(ms_of(iv.start)), x(ms_of(iv.end)));
            let _ = writeln!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} owns {}/{} (generation {}) {:.1}s-{:.1}s, then {}</title></rect>",
                y + 1.0,
                (x1 - x0).max(0.5),
                lane_h - 2.0,
                colour(&iv.member),
                xml(&iv.member),
                xml(t),
                p,
                iv.generation,
                ms_of(iv.start) as f64 / 1000.0,
                ms_of(iv.end) as f64 / 1000.0,
                iv.ended_by
            );
        }
    }
    // Faults: bands for lasting ones, lines for instant ones.
    let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut label_row = 0;
    for e in entries {
        let Event::Chaos {
            action,
            target,
            detail,
        } = &e.event
        else {
            continue;
        };
        let t = ms_of(e.ts);
        let key = (action.clone(), target.clone());
        if detail == "start" {
            open.insert(key, t);
            continue;
        }
        let (x0, x1, what) = if detail == "end" {
            let Some(t0) = open.remove(&key) else {
                continue;
            };
            (x(t0), x(t), format!("{action} {target}"))
        } else {
            (x(t), x(t), format!("{action} {target}"))
        };
        let y = 30.0 + 11.0 * (label_row % 2) as f64;
        label_row += 1;
        if x1 > x0 {
            let _ = writeln!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{lanes_h}\" fill=\"#d32f2f\" fill-opacity=\"0.12\" stroke=\"#d32f2f\" stroke-opacity=\"0.5\"><title>{}</title></rect>",
                x1 - x0,
                xml(&what)
            );
        } else {
            let _ = writeln!(
                s,
                "<line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d32f2f\" stroke-width=\"1.5\"><title>{}</title></line>",
                top - 6.0,
                top + lanes_h,
                xml(&what)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{x0:.1}\" y=\"{y:.1}\" fill=\"#b71c1c\" font-size=\"10\">{}</text>",
            xml(&what)
        );
    }
    // Time axis.
    let axis_y = top + lanes_h + 4.0;
    let step = nice_step(end_ms);
    let mut t = 0;
    while t <= end_ms {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{axis_y}\" y2=\"{1:.1}\" stroke=\"#888\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}s</text>",
            x(t),
            axis_y + 4.0,
            axis_y + 15.0,
            t / 1000
        );
        t += step;
    }
    // Throughput.
    let peak = r
        .throughput
        .iter()
        .map(|p| p.produced.max(p.processed))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">records/s</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#666\">{}</text>",
        left - 6.0,
        tp_top + tp_h / 2.0,
        left - 6.0,
        tp_top + 10.0,
        peak as u64
    );
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{tp_top}\" width=\"{width}\" height=\"{tp_h}\" fill=\"none\" stroke=\"#ccc\"/>"
    );
    for (field, col, name) in [(0, "#888", "produced"), (1, "#0072B2", "processed")] {
        let pts: Vec<String> = r
            .throughput
            .iter()
            .map(|p| {
                let v = if field == 0 { p.produced } else { p.processed } as f64;
                format!(
                    "{:.1},{:.1}",
                    x(p.t * 1000 + 500),
                    tp_top + tp_h - tp_h * v / peak
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"1.5\"><title>{name}</title></polyline>",
            pts.join(" ")
        );
    }
    // Legend.
    let ly = tp_top + tp_h + 30.0;
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"#888\"/><text x=\"{:.1}\" y=\"{:.1}\">produced</text>\
         <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"#0072B2\"/><text x=\"{:.1}\" y=\"{:.1}\">processed</text>\
         <rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\">rebalancing</text>\
         <rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"#d32f2f\" fill-opacity=\"0.2\"/><text x=\"{:.1}\" y=\"{:.1}\">fault</text>",
        left + 20.0,
        left + 24.0,
        ly + 4.0,
        left + 100.0,
        left + 120.0,
        left + 124.0,
        ly + 4.0,
        left + 210.0,
        ly - 5.0,
        left + 228.0,
        ly + 4.0,
        left + 320.0,
        ly - 5.0,
        left + 338.0,
        ly + 4.0
    );
    for (i, m) in members.iter().enumerate() {
        let lx = left + (i % 3) as f64 * 335.0;
        let y = ly + 20.0 + (i / 3) as f64 * 18.0;
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} ({})</text>",
            y - 9.0,
            colour(m),
            lx + 18.0,
            y,
            xml(m),
            xml(&r.members[*m])
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nice_step(end_ms: u64) -> u64 {
    for s in [
        1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
    ] {
        if end_ms / s <= 15 {
            return s;
        }
    }
    600_000
}

fn xml(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
