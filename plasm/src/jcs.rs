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

/// Returns the RFC 8785 canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out, &mut String::new())?;
    Ok(out.into_bytes())
}

fn write_value(value: &Value, out: &mut String, path: &mut String) -> Result<(), CanonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonError::UnsafeInteger {
                        path: pointer(path),
                    });
                }
                let _ = write!(out, "{u}");
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonError::UnsafeInteger {
                        path: pointer(path),
                    });
                }
                let _ = write!(out, "{i}");
            } else {
                return Err(CanonError::Float {
                    path: pointer(path),
                });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let len = path.len();
                let _ = write!(path, "/{i}");
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // RFC 8785 §3.2.3: members sorted by their names as UTF-16 code units.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if let Some(v) = map.get(key) {
                    write_value(v, out, path)?;
                }
                path.truncate(len);
            }
            out.push('}');
        }
    }
    Ok(())
}

fn pointer(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// ECMAScript `JSON.stringify` string escaping, which RFC 8785 adopts: only the
/// quote, the backslash and C0 controls are escaped; everything else (U+2028
/// included) is written as UTF-8.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
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
