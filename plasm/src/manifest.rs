//! Job manifests: schema validation, typed access, and the job id.
//!
//! A manifest is validated against `schemas/manifest.schema.json` before anything
//! else looks at it. The job id is the SHA-256 of the manifest's RFC 8785 form
//! *as sent*, so defaults are applied only to the typed view, never written back.

use crate::jcs;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The manifest schema, as published in `schemas/`.
pub const MANIFEST_SCHEMA: &str = include_str!("../../schemas/manifest.schema.json");
/// The `version` every v1 manifest carries.
pub const MANIFEST_VERSION: &str = "plasm.job/v1";
/// Default fuel budget (instructions under `plasm-fuel/1`).
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Default linear-memory cap.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Default cap on each of stdout and stderr.
pub const DEFAULT_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Default exported entry point.
pub const DEFAULT_ENTRY: &str = "_start";

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not JSON at all.
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    /// The JSON breaks a rule of the schema; `path` is the JSON pointer of the value, `rule` the schema keyword.
    #[error("manifest violates the schema at {path} ({rule}): {message}")]
    Schema {
        /// JSON pointer into the manifest.
        path: String,
        /// The schema keyword that failed (`required`, `pattern`, ...).
        rule: String,
        /// Human-readable explanation.
        message: String,
    },
    /// The manifest holds a value with no canonical form (a float, a huge integer).
    #[error("manifest cannot be canonicalised: {0}")]
    Canonical(#[from] jcs::CanonError),
}

/// A blob referenced by hash and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlobRef {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Resource limits with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget.
    pub fuel: u64,
    /// Memory cap in bytes.
    pub memory_bytes: u64,
    /// Cap on each of stdout and stderr.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    output_bytes: Option<u64>,
}

/// What the job asks of its executor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// Runtime name, e.g. `wasm3`.
    pub runtime: Option<String>,
    /// Labels the executor must advertise.
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[allow(dead_code)]
    version: String,
    module: BlobRef,
    entry: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    input: Option<BlobRef>,
    limits: Option<RawLimits>,
    #[serde(default)]
    requirements: Requirements,
    nonce: String,
    created_at: String,
}

/// A validated manifest: the JSON as sent, its job id, and a typed view with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    raw: Value,
    job_id: String,
    /// The module reference.
    pub module: BlobRef,
    /// Entry point (default `_start`).
    pub entry: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Environment, sorted by name.
    pub env: BTreeMap<String, String>,
    /// Stdin reference, if any.
    pub input: Option<BlobRef>,
    /// Limits with defaults applied.
    pub limits: Limits,
    /// Executor requirements.
    pub requirements: Requirements,
    /// Client nonce.
    pub nonce: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Compiles one of plasm's embedded schemas (2020-12, formats checked).
pub(crate) fn compile_schema(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("embedded schema compiles")
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| compile_schema(MANIFEST_SCHEMA))
}

/// Converts the first schema violation into a `(path, rule, message)` triple.
pub(crate) fn first_violation(
    validator: &jsonschema::Validator,
    value: &Value,
) -> Option<(String, String, String)> {
    let err = validator.iter_errors(value).next()?;
    let path = err.instance_path().to_string();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let schema_path = err.schema_path().to_string();
    let rule = schema_path.rsplit('/').next().unwrap_or("").to_owned();
    Some((path, rule, err.to_string()))
}

impl Manifest {
    /// Parses and validates manifest text.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        // Strict: a member named twice is refused (decision 0047).
        let value =
            crate::jcs::parse_strict(text).map_err(|e| ManifestError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates a manifest value against the schema and computes its job id.
    pub fn from_value(value: Value) -> Result<Self, ManifestError> {
        if let Some((path, rule, message)) = first_violation(validator(), &value) {
            return Err(ManifestError::Schema {
                path,
                rule,
                message,
            });
        }
        let canonical = jcs::canonicalize(&value)?;
        let job_id = hex::encode(Sha256::digest(&canonical));
        let raw: RawManifest =
            serde_json::from_value(value.clone()).map_err(|e| ManifestError::Schema {
                path: "/".into(),
                rule: "type".into(),
                message: e.to_string(),
            })?;
        let limits = raw.limits.map_or_else(Limits::default, |l| Limits {
            fuel: l.fuel.unwrap_or(DEFAULT_FUEL),
            memory_bytes: l.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES),
            output_bytes: l.output_bytes.unwrap_or(DEFAULT_OUTPUT_BYTES),
        });
        Ok(Self {
            raw: value,
            job_id,
            module: raw.module,
            entry: raw.entry.unwrap_or_else(|| DEFAULT_ENTRY.to_owned()),
            args: raw.args,
            env: raw.env,
            input: raw.input,
            limits,
            requirements: raw.requirements,
            nonce: raw.nonce,
            created_at: raw.created_at,
        })
    }

    /// The lowercase hex SHA-256 of the canonical manifest.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The manifest exactly as validated.
    pub fn as_value(&self) -> &Value {
        &self.raw
    }

    /// The hex SHA-256 of the input (of the empty string when there is none).
    pub fn input_sha256(&self) -> String {
        self.input
            .as_ref()
            .map_or_else(|| hex::encode(Sha256::digest(b"")), |i| i.sha256.clone())
    }
}

/// Builds manifests for local runs and for clients.
#[derive(Debug, Clone, Default)]
pub struct ManifestBuilder {
    entry: Option<String>,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    output_bytes: Option<u64>,
    labels: Vec<String>,
    runtime: Option<String>,
}

impl ManifestBuilder {
    /// Starts an empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the entry point.
    pub fn entry(mut self, entry: impl Into<String>) -> Self {
        self.entry = Some(entry.into());
        self
    }
    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }
    /// Sets the fuel budget.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }
    /// Sets the memory cap.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }
    /// Sets the output cap.
    pub fn output_bytes(mut self, bytes: u64) -> Self {
        self.output_bytes = Some(bytes);
        self
    }
    /// Requires a label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.push(label.into());
        self
    }
    /// Requires a runtime.
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = Some(runtime.into());
        self
    }

    /// Builds and validates a manifest for `module` and `input`, with a fresh random nonce and the current time.
    pub fn build(self, module: &[u8], input: &[u8]) -> Result<Manifest, ManifestError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| ManifestError::Json(format!("no randomness for the nonce: {e}")))?;
        self.build_with(
            module,
            input,
            &hex::encode(nonce),
            &crate::time::now_rfc3339(),
        )
    }

    /// Builds with an explicit nonce and creation time (tests and vectors).
    pub fn build_with(
        self,
        module: &[u8],
        input: &[u8],
        nonce: &str,
        created_at: &str,
    ) -> Result<Manifest, ManifestError> {
        let mut m = serde_json::Map::new();
        m.insert("version".into(), MANIFEST_VERSION.into());
        m.insert("module".into(), blob(module));
        if let Some(entry) = self.entry {
            m.insert("entry".into(), entry.into());
        }
        if !self.args.is_empty() {
            m.insert("args".into(), self.args.into());
        }
        if !self.env.is_empty() {
            m.insert(
                "env".into(),
                serde_json::to_value(self.env).unwrap_or_default(),
            );
        }
        if !input.is_empty() {
            m.insert("input".into(), blob(input));
        }
        let mut limits = serde_json::Map::new();
        for (k, v) in [
            ("fuel", self.fuel),
            ("memory_bytes", self.memory_bytes),
            ("output_bytes", self.output_bytes),
        ] {
            if let Some(v) = v {
                limits.insert(k.into(), v.into());
            }
        }
        if !limits.is_empty() {
            m.insert("limits".into(), limits.into());
        }
        if self.runtime.is_some() || !self.labels.is_empty() {
            let mut r = serde_json::Map::new();
            if let Some(rt) = self.runtime {
                r.insert("runtime".into(), rt.into());
            }
            if !self.labels.is_empty() {
                r.insert("labels".into(), self.labels.into());
            }
            m.insert("requirements".into(), r.into());
        }
        m.insert("nonce".into(), nonce.into());
        m.insert("created_at".into(), created_at.into());
        Manifest::from_value(Value::Object(m))
    }
}

fn blob(bytes: &[u8]) -> Value {
    serde_json::json!({"sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "version": "plasm.job/v1",
            "module": {"sha256": "a".repeat(64), "size": 10},
            "nonce": "0123456789abcdef0123",
            "created_at": "2026-11-20T12:00:00Z"
        })
    }

    #[test]
    fn accepts_minimal_manifest_and_applies_defaults() {
        let m = Manifest::from_value(base()).expect("valid");
        assert_eq!(m.entry, "_start");
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.job_id().len(), 64);
    }

    #[test]
    fn job_id_ignores_key_order_and_whitespace() {
        let a = Manifest::from_value(base()).expect("valid");
        let text = r#"{ "created_at":"2026-11-20T12:00:00Z","nonce":"0123456789abcdef0123",
            "module":{"size":10,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"version":"plasm.job/v1"}"#;
        let b = Manifest::from_json(text).expect("valid");
        assert_eq!(a.job_id(), b.job_id());
    }

    #[test]
    fn violations_name_path_and_rule() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str, &str)> = vec![
            (
                Box::new(|v| v["extra"] = json!(1)),
                "/",
                "additionalProperties",
            ),
            (
                Box::new(|v| v["nonce"] = json!("short")),
                "/nonce",
                "minLength",
            ),
            (
                Box::new(|v| v["module"]["sha256"] = json!("ABC")),
                "/module/sha256",
                "pattern",
            ),
            (
                Box::new(|v| v["limits"] = json!({"fuel": 0})),
                "/limits/fuel",
                "minimum",
            ),
            (
                Box::new(|v| v["created_at"] = json!("yesterday")),
                "/created_at",
                "format",
            ),
            (
                Box::new(|v| v["version"] = json!("plasm.job/v2")),
                "/version",
                "const",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().map(|o| o.remove("nonce"));
                }),
                "/",
                "required",
            ),
            (Box::new(|v| v["args"] = json!([1])), "/args/0", "type"),
        ];
        for (mutate, path, rule) in cases {
            let mut v = base();
            mutate(&mut v);
            match Manifest::from_value(v) {
                Err(ManifestError::Schema {
                    path: p, rule: r, ..
                }) => {
                    assert_eq!((p.as_str(), r.as_str()), (path, rule));
                }
                other => panic!("expected schema error at {path}, got {other:?}"),
            }
        }
    }

    #[test]
    fn float_limits_are_refused() {
        let mut v = base();
        v["limits"] = serde_json::from_str(r#"{"fuel": 1000.0}"#).expect("json");
        assert!(Manifest::from_value(v).is_err());
    }
}
