//! Kafka's JSON message definitions, parsed into a model the generator walks.
//!
//! The files are JSON with `//` comments (Apache Kafka `clients/src/main/resources/common/message`).
//! The meaning of each key follows Kafka's own generator (`generator/src/main/java/.../FieldSpec.java`
//! and `MessageSpec.java`): `versions`, `nullableVersions`, `taggedVersions`, `tag`, `ignorable`,
//! `default`, `flexibleVersions` (per message, overridable per field) and `commonStructs`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An inclusive version range; `min > max` means "no versions".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

impl Versions {
    pub(crate) const NONE: Self = Self { min: 1, max: 0 };

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(Self::NONE);
        }
        if let Some(min) = s.strip_suffix('+') {
            let min = min
                .parse()
                .map_err(|e| format!("bad versions {s:?}: {e}"))?;
            return Ok(Self { min, max: i16::MAX });
        }
        if let Some((a, b)) = s.split_once('-') {
            let min = a.parse().map_err(|e| format!("bad versions {s:?}: {e}"))?;
            let max = b.parse().map_err(|e| format!("bad versions {s:?}: {e}"))?;
            return Ok(Self { min, max });
        }
        let v = s.parse().map_err(|e| format!("bad versions {s:?}: {e}"))?;
        Ok(Self { min: v, max: v })
    }

    pub(crate) fn is_empty(self) -> bool {
        self.min > self.max
    }

    pub(crate) fn intersect(self, other: Self) -> Self {
        Self {
            min: self.min.max(other.min),
            max: self.max.min(other.max),
        }
    }

    /// Whether `self` covers every version of `within`.
    pub(crate) fn covers(self, within: Self) -> bool {
        within.is_empty() || (self.min <= within.min && self.max >= within.max)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    api_key: Option<i16>,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    valid_versions: String,
    #[serde(default)]
    deprecated_versions: Option<String>,
    #[serde(default)]
    flexible_versions: Option<String>,
    #[serde(default)]
    latest_version_unstable: Option<bool>,
    #[serde(default)]
    listeners: Option<Vec<String>>,
    fields: Vec<RawField>,
    #[serde(default)]
    common_structs: Vec<RawStruct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStruct {
    name: String,
    versions: String,
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    versions: Option<String>,
    #[serde(default)]
    nullable_versions: Option<String>,
    #[serde(default)]
    tagged_versions: Option<String>,
    /// A number, or in a few definitions a string holding one.
    #[serde(default)]
    tag: Option<serde_json::Value>,
    #[serde(default)]
    ignorable: Option<bool>,
    #[serde(default)]
    default: Option<serde_json::Value>,
    #[serde(default)]
    about: Option<String>,
    #[serde(default)]
    flexible_versions: Option<String>,
    #[serde(default)]
    fields: Option<Vec<RawField>>,
    #[serde(default)]
    map_key: Option<bool>,
    #[serde(default)]
    entity_type: Option<String>,
    #[serde(default)]
    zero_copy: Option<bool>,
}

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    F64,
    Uuid,
    String,
    Bytes,
    Records,
    Struct(String),
    Array(Box<Ty>),
}

impl Ty {
    fn parse(s: &str) -> Self {
        if let Some(inner) = s.strip_prefix("[]") {
            return Ty::Array(Box::new(Ty::parse(inner)));
        }
        match s {
            "bool" => Ty::Bool,
            "int8" => Ty::I8,
            "int16" => Ty::I16,
            "uint16" => Ty::U16,
            "int32" => Ty::I32,
            "uint32" => Ty::U32,
            "int64" => Ty::I64,
            "float64" => Ty::F64,
            "uuid" => Ty::Uuid,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            "records" => Ty::Records,
            other => Ty::Struct(other.to_owned()),
        }
    }
}

/// One field of a struct, with its version ranges already intersected with the message's valid
/// versions.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) ty: Ty,
    pub(crate) versions: Versions,
    pub(crate) nullable: Versions,
    pub(crate) tagged: Versions,
    pub(crate) tag: Option<u32>,
    pub(crate) ignorable: bool,
    pub(crate) default: Option<String>,
    pub(crate) about: String,
    pub(crate) flexible_override: Option<Versions>,
    /// Generated as a shared list, `Arc<[T]>`, rather than a `Vec` ([`SHARED`]).
    pub(crate) shared: bool,
}

/// Array fields generated as `Arc<[T]>`, by message and field: lists that many messages of one
/// exchange repeat, so that a decoder can hand every message the same list. Every member of a
/// consumer group usually subscribes to the same topics: a leader of 2,000 members of 500
/// topics otherwise holds a million names.
pub(crate) const SHARED: &[(&str, &str)] = &[("ConsumerProtocolSubscription", "Topics")];

/// A struct: the message itself, or a nested or common struct of it.
#[derive(Debug, Clone)]
pub(crate) struct StructDef {
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
    /// Versions in which the struct can appear.
    pub(crate) versions: Versions,
}

/// One parsed message definition.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) valid: Versions,
    pub(crate) flexible: Versions,
    pub(crate) deprecated: Versions,
    pub(crate) latest_unstable: bool,
    /// The message struct first, then nested structs in declaration order.
    pub(crate) structs: Vec<StructDef>,
}

/// Removes `//` comments that are outside string literals.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The top-level facts of a definition, read leniently (some definitions Kafka ships repeat a
/// key inside a field, which the strict parser rejects); used for the `ApiKey` table.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) api_key: Option<i16>,
    pub(crate) valid: Versions,
    pub(crate) flexible: Versions,
}

pub(crate) fn parse_summary(text: &str) -> Result<Summary, String> {
    let v: serde_json::Value =
        serde_json::from_str(&strip_comments(text)).map_err(|e| format!("invalid JSON: {e}"))?;
    let valid = Versions::parse(v["validVersions"].as_str().ok_or("no validVersions")?)?;
    let flexible = match v["flexibleVersions"].as_str() {
        Some(f) => Versions::parse(f)?.intersect(valid),
        None => Versions::NONE,
    };
    Ok(Summary {
        api_key: v["apiKey"].as_i64().map(|k| k as i16),
        valid,
        flexible,
    })
}

pub(crate) fn parse(text: &str) -> Result<Spec, String> {
    let raw: RawSpec =
        serde_json::from_str(&strip_comments(text)).map_err(|e| format!("invalid JSON: {e}"))?;
    let _ = (&raw.listeners, &raw.api_key);
    let valid = Versions::parse(&raw.valid_versions)?;
    let flexible = match &raw.flexible_versions {
        Some(f) => Versions::parse(f)?,
        None => Versions::NONE,
    };
    let deprecated = match &raw.deprecated_versions {
        Some(d) => Versions::parse(d)?,
        None => Versions::NONE,
    };
    let mut common = BTreeMap::new();
    for c in &raw.common_structs {
        common.insert(c.name.clone(), c);
    }
    let mut structs = Vec::new();
    let mut fields = convert_fields(&raw.fields, valid, &common, &mut structs)?;
    for f in &mut fields {
        f.shared = SHARED.contains(&(raw.name.as_str(), f.name.as_str()));
        if f.shared && !matches!(f.ty, Ty::Array(_)) {
            return Err(format!(
                "{}.{} is shared but not an array",
                raw.name, f.name
            ));
        }
    }
    structs.insert(
        0,
        StructDef {
            name: raw.name.clone(),
            fields,
            versions: valid,
        },
    );
    Ok(Spec {
        name: raw.name,
        kind: raw.kind,
        valid,
        flexible: flexible.intersect(valid),
        deprecated: deprecated.intersect(valid),
        latest_unstable: raw.latest_version_unstable.unwrap_or(false),
        structs,
    })
}

fn convert_fields(
    raw: &[RawField],
    within: Versions,
    common: &BTreeMap<String, &RawStruct>,
    structs: &mut Vec<StructDef>,
) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    for f in raw {
        let _ = (&f.map_key, &f.entity_type, &f.zero_copy);
        let versions = Versions::parse(f.versions.as_deref().unwrap_or("0+"))?.intersect(within);
        let ty = Ty::parse(&f.ty);
        let nullable = match &f.nullable_versions {
            Some(n) => Versions::parse(n)?.intersect(versions),
            None => Versions::NONE,
        };
        let tagged = match &f.tagged_versions {
            Some(t) => Versions::parse(t)?.intersect(versions),
            None => Versions::NONE,
        };
        let tag = match &f.tag {
            None => None,
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|t| t as u32),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        if !tagged.is_empty() && tag.is_none() {
            return Err(format!("field {} has taggedVersions but no tag", f.name));
        }
        let default = f.default.as_ref().map(|d| match d {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        // Nested struct definitions: inline `fields`, or a reference to a common struct.
        let struct_name = match &ty {
            Ty::Struct(n) => Some(n.clone()),
            Ty::Array(inner) => match inner.as_ref() {
                Ty::Struct(n) => Some(n.clone()),
                _ => None,
            },
            _ => None,
        };
        if let Some(name) = struct_name {
            if let Some(sub) = &f.fields {
                let idx = structs.len();
                structs.push(StructDef {
                    name: name.clone(),
                    fields: Vec::new(),
                    versions,
                });
                let fields = convert_fields(sub, versions, common, structs)?;
                structs[idx].fields = fields;
            } else if let Some(existing) = structs.iter_mut().find(|s| s.name == name) {
                // A common struct used by several fields exists in the union of their versions.
                existing.versions = Versions {
                    min: existing.versions.min.min(versions.min),
                    max: existing.versions.max.max(versions.max),
                };
            } else if let Some(c) = common.get(&name) {
                let cv = Versions::parse(&c.versions)?.intersect(within);
                let idx = structs.len();
                structs.push(StructDef {
                    name: name.clone(),
                    fields: Vec::new(),
                    versions: versions.intersect(cv),
                });
                let fields = convert_fields(&c.fields, cv, common, structs)?;
                structs[idx].fields = fields;
            } else {
                return Err(format!("unknown struct type {name} for field {}", f.name));
            }
        }
        out.push(Field {
            name: f.name.clone(),
            ty,
            versions,
            nullable,
            tagged,
            tag,
            ignorable: f.ignorable.unwrap_or(false),
            default,
            about: f.about.clone().unwrap_or_default(),
            flexible_override: match &f.flexible_versions {
                Some(v) => Some(Versions::parse(v)?),
                None => None,
            },
            shared: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            Versions::parse("3+").unwrap(),
            Versions {
                min: 3,
                max: i16::MAX
            }
        );
        assert_eq!(Versions::parse("0-4").unwrap(), Versions { min: 0, max: 4 });
        assert_eq!(Versions::parse("7").unwrap(), Versions { min: 7, max: 7 });
        assert!(Versions::parse("none").unwrap().is_empty());
    }

    #[test]
    fn comments_inside_strings_survive() {
        let s = strip_comments("{ \"a\": \"s3://x\" // comment\n }");
        assert_eq!(s, "{ \"a\": \"s3://x\" \n }");
    }
}
