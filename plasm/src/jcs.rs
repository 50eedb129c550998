//! RFC 8785 (JSON Canonicalization Scheme) for the value types plasm signs.
//!
//! Receipts and manifests are hashed and signed over canonical bytes so that any
//! implementation (Rust, PHP, a shell with `jq`) re-derives the same bytes from
//! the same JSON. plasm's documents hold only strings, integers below 2^53,
//! booleans, null, arrays and objects, so this canonicaliser refuses every
//! other number instead of reproducing ECMAScript float formatting: a float in
//! a signed document is a sign that it was re-encoded by something lossy.

use serde_json::Value;
use std::fmt::Write as _;

/// The largest integer magnitude JCS (IEEE-754 doubles) represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form in plasm's JCS subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// A number with a fraction or exponent (including `1.0`): plasm documents never hold floats.
    #[error("non-integer number at {path}: plasm documents hold no floats")]
    Float {
        /// JSON pointer of the offending value.
        path: String,
    },
    /// An integer whose magnitude is 2^53 or more cannot round-trip through IEEE doubles.
    #[error("integer at {path} is outside ±(2^53-1)")]
    UnsafeInteger {
        /// JSON pointer of the offending value.
        path: String,
    },
}

/// Parses JSON text the way a signed document must be read: RFC 8785 requires
/// I-JSON input, which forbids duplicate member names, and a parser that keeps
/// the last copy (serde_json, PHP's `json_decode`) would show a verifier values
/// that a reader taking the first copy (grep, a person, many libraries) never
/// sees. Names are compared after unescaping (`"a"` and `"\u0061"` are one).
/// Nesting is bounded by serde_json's recursion limit (128).
pub fn parse_strict(text: &str) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde::de::DeserializeSeed::deserialize(StrictSeed, &mut de)
        .map_err(|e| StrictError::from_json(&e))?;
    de.end().map_err(|e| StrictError::from_json(&e))?;
    Ok(value)
}

/// Why [`parse_strict`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// An object names a member twice.
    #[error("duplicate member \"{0}\"")]
    Duplicate(String),
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Syntax(String),
}

/// Marker serde_json carries through its error text for a duplicate.
const DUPLICATE_TAG: &str = "\u{1}plasm-duplicate-member\u{1}";

impl StrictError {
    fn from_json(e: &serde_json::Error) -> Self {
        let text = e.to_string();
        match text
            .strip_prefix(DUPLICATE_TAG)
            .and_then(|rest| rest.split_once(DUPLICATE_TAG))
        {
            Some((name, _)) => Self::Duplicate(name.to_owned()),
            None => Self::Syntax(text),
        }
    }
}

struct StrictSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE_TAG}{key}{DUPLICATE_TAG}"
                )));
            }
            let v = map.next_value_seed(StrictSeed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Returns the RFC 8785 canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out.into_bytes())
}

/// Returns the RFC 8785 canonical bytes of `map` as an object, leaving out the member `skip`.
pub fn canonicalize_without(
    map: &serde_json::Map<String, Value>,
    skip: &str,
) -> Result<Vec<u8>, CanonError> {
    let mut out = String::with_capacity(512);
    write_object(map, Some(skip), &mut out)?;
    Ok(out.into_bytes())
}

impl CanonError {
    /// Adds a parent segment to the error's JSON pointer while the error unwinds,
    /// so the happy path never builds paths.
    fn within(self, segment: &str) -> Self {
        let seg = segment.replace('~', "~0").replace('/', "~1");
        let join = |path: String| {
            if path == "/" {
                format!("/{seg}")
            } else {
                format!("/{seg}{path}")
            }
        };
        match self {
            Self::Float { path } => Self::Float { path: join(path) },
            Self::UnsafeInteger { path } => Self::UnsafeInteger { path: join(path) },
        }
    }
}

fn write_object(
    map: &serde_json::Map<String, Value>,
    skip: Option<&str>,
    out: &mut String,
) -> Result<(), CanonError> {
    // RFC 8785 §3.2.3: members sorted by their names as UTF-16 code units.
    let mut members: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        write_value(value, out).map_err(|e| e.within(key))?;
    }
    out.push('}');
    Ok(())
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonError> {
    let here = || "/".to_owned();
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonError::UnsafeInteger { path: here() });
                }
                let _ = write!(out, "{u}");
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonError::UnsafeInteger { path: here() });
                }
                let _ = write!(out, "{i}");
            } else {
                return Err(CanonError::Float { path: here() });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out).map_err(|e| e.within(&i.to_string()))?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, None, out)?,
    }
    Ok(())
}

/// ECMAScript `JSON.stringify` string escaping, which RFC 8785 adopts: only the
/// quote, the backslash and C0 controls are escaped; everything else (U+2028
/// included) is written as UTF-8.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        // Every byte that needs escaping is ASCII, so slicing at it stays on a char boundary.
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonicalize(v).expect("canonical")).expect("utf8")
    }

    #[test]
    fn sorts_keys_by_utf16_code_units() {
        // U+10000 (surrogate pair D800 DC00) sorts before U+FB33 in UTF-16 but after it in UTF-8.
        let v = json!({"\u{fb33}": 1, "\u{10000}": 2, "b": 3, "a": {"z": 1, "y": [3, 2]}});
        assert_eq!(
            canon(&v),
            "{\"a\":{\"y\":[3,2],\"z\":1},\"b\":3,\"\u{10000}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn escapes_like_ecmascript() {
        let v = json!("q\"b\\\u{08}\u{0c}\n\r\t\u{01}\u{1f}\u{7f}\u{2028}é");
        assert_eq!(
            canon(&v),
            "\"q\\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn refuses_floats_and_unsafe_integers() {
        let one_point_zero: Value = serde_json::from_str("{\"a\":[1.0]}").expect("json");
        assert_eq!(
            canonicalize(&one_point_zero),
            Err(CanonError::Float {
                path: "/a/0".into()
            })
        );
        assert!(matches!(
            canonicalize(&json!(MAX_SAFE_INTEGER + 1)),
            Err(CanonError::UnsafeInteger { .. })
        ));
        assert_eq!(canon(&json!(-9007199254740991_i64)), "-9007199254740991");
        assert_eq!(canon(&json!([null, true, false, 0])), "[null,true,false,0]");
    }
}
