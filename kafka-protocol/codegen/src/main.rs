//! `cohort-codegen`: generates `kafka-protocol/src/generated/` from Apache Kafka's JSON message
//! definitions.
//!
//! ```text
//! cargo run -p cohort-codegen                 # regenerate in place
//! cargo run -p cohort-codegen -- --check      # fail if the committed output is stale
//! ```
//!
//! The definitions are read from `../shared/kafka-message-specs` (beside the repository; Apache
//! Kafka 4.0, Apache-2.0) unless `--specs DIR` says otherwise. They are never copied into the
//! repository: only the generated Rust is committed, and CI regenerates it and checks for a diff.

mod emit;
mod spec;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::emit::snake;
use crate::spec::Spec;

/// The APIs whose messages the crate implements, in api-key order of importance to a consumer
/// group client.
const APIS: &[&str] = &[
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "SaslAuthenticate",
    "CreatePartitions",
    "ConsumerGroupHeartbeat",
];

/// Non-API structures: headers and the embedded consumer protocol.
const DATA: &[&str] = &[
    "RequestHeader",
    "ResponseHeader",
    "ConsumerProtocolSubscription",
    "ConsumerProtocolAssignment",
];

const KAFKA_REF: &str = "Apache Kafka 4.0";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut specs = root.join("../shared/kafka-message-specs");
    let mut out = root.join("kafka-protocol/src/generated");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--check" => check = true,
            "--specs" => specs = PathBuf::from(args.next().expect("--specs DIR")),
            "--out" => out = PathBuf::from(args.next().expect("--out DIR")),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: cohort-codegen [--check] [--specs DIR] [--out DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(&specs, &out, check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-codegen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(specs: &Path, name: &str) -> Result<(Spec, String), String> {
    let file = format!("{name}.json");
    let path = specs.join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = spec::parse(&text).map_err(|e| format!("{file}: {e}"))?;
    Ok((spec, file))
}

fn run(specs: &Path, out: &Path, check: bool) -> Result<(), String> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut modules = Vec::new();
    for api in APIS {
        for kind in ["Request", "Response"] {
            let (spec, file) = load(specs, &format!("{api}{kind}"))?;
            let module = snake(&spec.name);
            files.insert(
                format!("{module}.rs"),
                emit::message_module(&spec, &file, KAFKA_REF),
            );
            modules.push((module, spec));
        }
    }
    for name in DATA {
        let (spec, file) = load(specs, name)?;
        let module = snake(&spec.name);
        files.insert(
            format!("{module}.rs"),
            emit::message_module(&spec, &file, KAFKA_REF),
        );
        modules.push((module, spec));
    }
    files.insert("api_key.rs".into(), api_keys(specs)?);
    files.insert("mod.rs".into(), mod_rs(&modules));

    let target = if check {
        let tmp = std::env::temp_dir().join(format!("cohort-codegen-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        tmp
    } else {
        std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
        out.to_path_buf()
    };
    let mut paths = Vec::new();
    for (name, text) in &files {
        let p = target.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        paths.push(p);
    }
    let status = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&paths)
        .status()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    if !status.success() {
        return Err(format!(
            "rustfmt failed on generated code in {}",
            target.display()
        ));
    }
    if check {
        let mut stale = Vec::new();
        for name in files.keys() {
            let fresh = std::fs::read_to_string(target.join(name)).map_err(|e| e.to_string())?;
            let committed = std::fs::read_to_string(out.join(name)).unwrap_or_default();
            if fresh != committed {
                stale.push(name.clone());
            }
        }
        if let Ok(dir) = std::fs::read_dir(out) {
            for entry in dir.flatten() {
                let n = entry.file_name().to_string_lossy().into_owned();
                if !files.contains_key(&n) {
                    stale.push(format!("{n} (not generated any more)"));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&target);
        if !stale.is_empty() {
            return Err(format!(
                "generated code is stale, run `cargo run -p cohort-codegen`: {}",
                stale.join(", ")
            ));
        }
        eprintln!("cohort-codegen: {} files up to date", files.len());
    } else {
        eprintln!(
            "cohort-codegen: wrote {} files to {}",
            files.len(),
            out.display()
        );
    }
    Ok(())
}

fn mod_rs(modules: &[(String, Spec)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by cohort-codegen ({KAFKA_REF}). Do not edit.\n"
    );
    let _ = writeln!(
        out,
        "//! Messages generated from Kafka's JSON definitions, one module per message.\n"
    );
    let _ = writeln!(out, "#![allow(missing_docs)]\n");
    let _ = writeln!(out, "pub mod api_key;");
    for (m, _) in modules {
        let _ = writeln!(out, "pub mod {m};");
    }
    let _ = writeln!(out);
    for (m, s) in modules {
        let _ = writeln!(out, "pub use {m}::{};", s.name);
    }
    // Enums over every request and response body, keyed by API, for code that dispatches on the
    // api key (fuzzers, golden-byte tests, the frame decoder's users).
    for kind in ["Request", "Response"] {
        let _ = writeln!(
            out,
            "\n/// Any {} body of the APIs this crate implements.\n#[derive(Debug, Clone, PartialEq)]\n#[non_exhaustive]\npub enum {kind}Kind {{",
            kind.to_lowercase()
        );
        for api in APIS {
            let _ = writeln!(out, "    /// `{api}{kind}`.\n    {api}({api}{kind}),");
        }
        let _ = writeln!(out, "}}\n");
        let _ = writeln!(out, "impl {kind}Kind {{");
        let _ = writeln!(
            out,
            "    /// Decodes the body of `api_key` at `version`. `None` if this crate does not implement the API.\n    pub fn decode(api_key: crate::ApiKey, version: i16, buf: &mut bytes::Bytes) -> Option<Result<Self, crate::DecodeError>> {{\n        use crate::codec::Decode;\n        Some(match api_key {{"
        );
        for api in APIS {
            let _ = writeln!(
                out,
                "            crate::ApiKey::{api} => {api}{kind}::decode(buf, version).map(Self::{api}),"
            );
        }
        let _ = writeln!(out, "            _ => return None,\n        }})\n    }}\n");
        let _ = writeln!(
            out,
            "    /// Encodes the body at `version`.\n    pub fn encode<B: bytes::BufMut>(&self, buf: &mut B, version: i16) -> Result<(), crate::EncodeError> {{\n        use crate::codec::Encode;\n        match self {{"
        );
        for api in APIS {
            let _ = writeln!(out, "            Self::{api}(m) => m.encode(buf, version),");
        }
        let _ = writeln!(out, "        }}\n    }}\n");
        let _ = writeln!(
            out,
            "    /// The API this body belongs to.\n    pub fn api_key(&self) -> crate::ApiKey {{\n        match self {{"
        );
        for api in APIS {
            let _ = writeln!(out, "            Self::{api}(_) => crate::ApiKey::{api},");
        }
        let _ = writeln!(out, "        }}\n    }}\n}}");
    }
    out
}

/// `ApiKey` for every API in the definitions (not only the implemented ones), with the header
/// versions each API version uses.
fn api_keys(specs: &Path) -> Result<String, String> {
    let mut apis: BTreeMap<i16, (String, spec::Summary, spec::Summary)> = BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(specs)
        .map_err(|e| format!("{}: {e}", specs.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("Request.json"))
        .collect();
    names.sort();
    for n in names {
        let base = n.trim_end_matches("Request.json").to_owned();
        let read = |name: String| -> Result<spec::Summary, String> {
            let path = specs.join(&name);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            spec::parse_summary(&text).map_err(|e| format!("{name}: {e}"))
        };
        let req = read(format!("{base}Request.json"))?;
        let resp = read(format!("{base}Response.json"))?;
        let key = req.api_key.ok_or_else(|| format!("{n}: no apiKey"))?;
        apis.insert(key, (base, req, resp));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by cohort-codegen from Apache Kafka's `*Request.json` ({KAFKA_REF}). Do not edit.\n"
    );
    let _ = writeln!(
        out,
        "//! API keys, their valid versions and the header version each API version uses.\n"
    );
    let _ = writeln!(out, "use crate::codec::VersionRange;\n");
    let _ = writeln!(
        out,
        "/// A Kafka API (the request header's `RequestApiKey`)."
    );
    let _ = writeln!(
        out,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\n#[non_exhaustive]\n#[repr(i16)]\npub enum ApiKey {{"
    );
    for (k, (name, _, _)) in &apis {
        let _ = writeln!(out, "    /// API key {k}.\n    {name} = {k},");
    }
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(out, "impl ApiKey {{");
    let _ = writeln!(
        out,
        "    /// Every API key in the definitions, in key order.\n    pub const ALL: &'static [ApiKey] = &["
    );
    for (name, _, _) in apis.values() {
        let _ = writeln!(out, "        ApiKey::{name},");
    }
    let _ = writeln!(out, "    ];\n");
    let _ = writeln!(
        out,
        "    /// The key for a wire value, or `None` for a key the definitions do not have.\n    pub const fn from_i16(key: i16) -> Option<Self> {{\n        Some(match key {{"
    );
    for (k, (name, _, _)) in &apis {
        let _ = writeln!(out, "            {k} => ApiKey::{name},");
    }
    let _ = writeln!(out, "            _ => return None,\n        }})\n    }}\n");
    let _ = writeln!(
        out,
        "    /// The wire value.\n    pub const fn as_i16(self) -> i16 {{\n        self as i16\n    }}\n"
    );
    let _ = writeln!(
        out,
        "    /// The API's name as Kafka spells it.\n    pub const fn name(self) -> &'static str {{\n        match self {{"
    );
    for (name, _, _) in apis.values() {
        let _ = writeln!(out, "            ApiKey::{name} => {name:?},");
    }
    let _ = writeln!(out, "        }}\n    }}\n");
    let _ = writeln!(
        out,
        "    /// Versions the definitions declare valid.\n    pub const fn versions(self) -> VersionRange {{\n        match self {{"
    );
    for (name, req, _) in apis.values() {
        let _ = writeln!(
            out,
            "            ApiKey::{name} => VersionRange::new({}, {}),",
            req.valid.min, req.valid.max
        );
    }
    let _ = writeln!(out, "        }}\n    }}\n");
    let _ = writeln!(
        out,
        "    /// Request header version for a request version: 2 when the request is flexible (KIP-482), else 1;\n    /// 0 only for `ControlledShutdown` v0.\n    pub const fn request_header_version(self, version: i16) -> i16 {{\n        match self {{"
    );
    for (name, req, _) in apis.values() {
        if req.flexible.is_empty() {
            let _ = writeln!(
                out,
                "            ApiKey::{name} => {},",
                if name == "ControlledShutdown" {
                    "if version == 0 { 0 } else { 1 }"
                } else {
                    "1"
                }
            );
        } else if name == "ControlledShutdown" {
            let _ = writeln!(
                out,
                "            ApiKey::{name} => if version == 0 {{ 0 }} else if version >= {} {{ 2 }} else {{ 1 }},",
                req.flexible.min
            );
        } else {
            let _ = writeln!(
                out,
                "            ApiKey::{name} => if version >= {} {{ 2 }} else {{ 1 }},",
                req.flexible.min
            );
        }
    }
    let _ = writeln!(out, "        }}\n    }}\n");
    let _ = writeln!(
        out,
        "    /// Response header version for a request version: 1 when the response is flexible, else 0.\n    /// `ApiVersions` always answers with header v0, so that a client that sent a version the broker\n    /// does not know can still read the answer (KIP-511).\n    pub const fn response_header_version(self, version: i16) -> i16 {{\n        match self {{"
    );
    for (name, _, resp) in apis.values() {
        if name == "ApiVersions" || resp.flexible.is_empty() {
            let _ = writeln!(out, "            ApiKey::{name} => 0,");
        } else {
            let _ = writeln!(
                out,
                "            ApiKey::{name} => if version >= {} {{ 1 }} else {{ 0 }},",
                resp.flexible.min
            );
        }
    }
    let _ = writeln!(out, "        }}\n    }}\n}}");
    Ok(out)
}
