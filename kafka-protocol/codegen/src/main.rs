//! `cohort-codegen`: generates `kafka-protocol/src/generated/` from Apache Kafka's JSON message
//! definitions.
//!
//! ```text
//! cargo run -p cohort-codegen                 # regenerate in place
//! cargo run -p cohort-codegen -- --check      # fail if the committed output is stale
//! ```
//!
//! The definitions are those of the Apache Kafka release the project pins (`kafka.version` in
//! `harness/kafka/pom.xml`), read from that release's `kafka-clients` jar
//! (`common/message/*.json`) in Cohort's cache folder, where `scripts/install.sh` puts it, so
//! that the codecs and the broker the tests run always agree. Without the jar they are read from
//! `../shared/kafka-message-specs` (an Apache Kafka 4.0 snapshot beside the repository), which
//! `--check` then reports as a different source. `--jar FILE` or `--specs DIR` name another
//! source. The definitions are never copied into the repository: only the generated Rust is
//! committed, and CI regenerates it and checks for a diff.

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
    "DeleteRecords",
    "AlterUserScramCredentials",
    "OffsetForLeaderEpoch",
    "ElectLeaders",
];

/// Non-API structures: headers and the embedded consumer protocol.
const DATA: &[&str] = &[
    "RequestHeader",
    "ResponseHeader",
    "ConsumerProtocolSubscription",
    "ConsumerProtocolAssignment",
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    // `cargo run` names the package's directory at run time: the one compiled in is where
    // the binary was built, which a target directory shared between checkouts (CI's clean
    // clone and a working tree) can leave pointing at the other checkout.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest_dir.join("../..");
    let mut chosen: Option<Source> = None;
    let mut out = root.join("kafka-protocol/src/generated");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--check" => check = true,
            "--specs" => {
                let dir = PathBuf::from(args.next().expect("--specs DIR"));
                chosen = Some(Source::dir(dir, "the definitions in --specs".into()));
            }
            "--jar" => {
                let jar = PathBuf::from(args.next().expect("--jar FILE"));
                match Source::jar(&jar, format!("{}", jar.display())) {
                    Ok(s) => chosen = Some(s),
                    Err(e) => {
                        eprintln!("cohort-codegen: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "--out" => out = PathBuf::from(args.next().expect("--out DIR")),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: cohort-codegen [--check] [--jar FILE | --specs DIR] [--out DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let source = match chosen {
        Some(s) => s,
        None => match Source::pinned(&root) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cohort-codegen: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    eprintln!("cohort-codegen: definitions of {}", source.kafka_ref);
    match run(&source, &out, check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-codegen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the JSON message definitions come from.
struct Source {
    /// File name (`JoinGroupRequest.json`) to text.
    files: BTreeMap<String, String>,
    /// What the generated files say they were generated from.
    kafka_ref: String,
    /// Whether this is the fallback snapshot rather than the pinned release.
    fallback: bool,
}

impl Source {
    fn dir(dir: PathBuf, kafka_ref: String) -> Self {
        let mut files = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json")
                    && let Ok(text) = std::fs::read_to_string(e.path())
                {
                    files.insert(name, text);
                }
            }
        }
        Self {
            files,
            kafka_ref,
            fallback: false,
        }
    }

    /// The `common/message/*.json` entries of a `kafka-clients` jar.
    fn jar(jar: &Path, kafka_ref: String) -> Result<Self, String> {
        use std::io::Read;
        let f = std::fs::File::open(jar).map_err(|e| format!("{}: {e}", jar.display()))?;
        let mut z = zip::ZipArchive::new(f).map_err(|e| format!("{}: {e}", jar.display()))?;
        let mut files = BTreeMap::new();
        for i in 0..z.len() {
            let mut entry = z
                .by_index(i)
                .map_err(|e| format!("{}: {e}", jar.display()))?;
            let full = entry
                .name()
                .map_err(|e| format!("{}: {e}", jar.display()))?
                .into_owned();
            let Some(name) = full
                .strip_prefix("common/message/")
                .filter(|n| n.ends_with(".json") && !n.contains('/'))
                .map(str::to_owned)
            else {
                continue;
            };
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: {name}: {e}", jar.display()))?;
            files.insert(name, text);
        }
        if files.is_empty() {
            return Err(format!(
                "{} holds no common/message/*.json (not a kafka-clients jar?)",
                jar.display()
            ));
        }
        Ok(Self {
            files,
            kafka_ref,
            fallback: false,
        })
    }

    /// The pinned release's jar in Cohort's cache, else the fallback snapshot.
    fn pinned(root: &Path) -> Result<Self, String> {
        let pom_path = root.join("harness/kafka/pom.xml");
        let pom = std::fs::read_to_string(&pom_path)
            .map_err(|e| format!("{}: {e}", pom_path.display()))?;
        let version = pom
            .split("<kafka.version>")
            .nth(1)
            .and_then(|r| r.split("</kafka.version>").next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{} names no <kafka.version>", pom_path.display()))?
            .to_owned();
        let jar = cache_dir()
            .join("kafka")
            .join(&version)
            .join("libs")
            .join(format!("kafka-clients-{version}.jar"));
        if jar.is_file() {
            return Self::jar(&jar, format!("Apache Kafka {version}"));
        }
        let snapshot = root.join("../shared/kafka-message-specs");
        eprintln!(
            "cohort-codegen: {} is not installed (scripts/install.sh installs it); using the Apache Kafka 4.0 snapshot in {}",
            jar.display(),
            snapshot.display()
        );
        let mut s = Self::dir(snapshot, "Apache Kafka 4.0".into());
        s.fallback = true;
        Ok(s)
    }

    fn read(&self, file: &str) -> Result<&str, String> {
        self.files
            .get(file)
            .map(String::as_str)
            .ok_or_else(|| format!("{file}: not in {}", self.kafka_ref))
    }
}

/// Cohort's cache folder, by the rule of `cohort-testbroker` and the install scripts.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COHORT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cohort");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("cohort")
}

fn load(source: &Source, name: &str) -> Result<(Spec, String), String> {
    let file = format!("{name}.json");
    let text = source.read(&file)?;
    let spec = spec::parse(text).map_err(|e| format!("{file}: {e}"))?;
    Ok((spec, file))
}

fn run(source: &Source, out: &Path, check: bool) -> Result<(), String> {
    let specs = source;
    let kafka_ref = source.kafka_ref.as_str();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut modules = Vec::new();
    for api in APIS {
        for kind in ["Request", "Response"] {
            let (spec, file) = load(specs, &format!("{api}{kind}"))?;
            let module = snake(&spec.name);
            files.insert(
                format!("{module}.rs"),
                emit::message_module(&spec, &file, kafka_ref),
            );
            modules.push((module, spec));
        }
    }
    for name in DATA {
        let (spec, file) = load(specs, name)?;
        let module = snake(&spec.name);
        files.insert(
            format!("{module}.rs"),
            emit::message_module(&spec, &file, kafka_ref),
        );
        modules.push((module, spec));
    }
    files.insert("api_key.rs".into(), api_keys(specs)?);
    files.insert("mod.rs".into(), mod_rs(&modules, kafka_ref));

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
            let hint = if source.fallback {
                " (these definitions are the fallback snapshot; the committed code was likely generated from the pinned release's jar: run scripts/install.sh first)"
            } else {
                ""
            };
            return Err(format!(
                "generated code is stale, run `cargo run -p cohort-codegen`{hint}: {}",
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

fn mod_rs(modules: &[(String, Spec)], kafka_ref: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by cohort-codegen ({kafka_ref}). Do not edit.\n"
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
    // One list of every generated message for the tests that run over all of them (round trip,
    // differential), so a message added here is tested without editing them.
    let _ = writeln!(
        out,
        "\n/// Calls `$callback!` with every generated message, as `module_name: TypeName,` pairs\n/// (the round-trip and differential tests run over this list).\n#[cfg(feature = \"testing\")]\n#[macro_export]\nmacro_rules! for_each_message {{\n    ($callback:ident) => {{\n        $callback! {{"
    );
    for (m, s) in modules {
        let _ = writeln!(out, "            {m}: {},", s.name);
    }
    let _ = writeln!(out, "        }}\n    }};\n}}");
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
fn api_keys(specs: &Source) -> Result<String, String> {
    let kafka_ref = specs.kafka_ref.as_str();
    let mut apis: BTreeMap<i16, (String, spec::Summary, spec::Summary)> = BTreeMap::new();
    let names: Vec<String> = specs
        .files
        .keys()
        .filter(|n| n.ends_with("Request.json"))
        .cloned()
        .collect();
    for n in names {
        let base = n.trim_end_matches("Request.json").to_owned();
        let read = |name: String| -> Result<spec::Summary, String> {
            let text = specs.read(&name)?;
            spec::parse_summary(text).map_err(|e| format!("{name}: {e}"))
        };
        let req = read(format!("{base}Request.json"))?;
        let resp = read(format!("{base}Response.json"))?;
        let key = req.api_key.ok_or_else(|| format!("{n}: no apiKey"))?;
        apis.insert(key, (base, req, resp));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by cohort-codegen from Apache Kafka's `*Request.json` ({kafka_ref}). Do not edit.\n"
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
