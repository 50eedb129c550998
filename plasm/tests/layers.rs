//! The library's modules point one way along the data path: a module may use
//! only modules of a lower layer (never one of its own layer, never a higher
//! one), so no import cycle can form. Read from the `crate::` paths in the
//! sources, `use` lines and inline paths alike; a new top-level module must be
//! given a layer here, which is the moment to decide where it belongs.

use std::collections::BTreeMap;
use std::path::Path;

/// Layers from the bottom: each line may use only the lines above it.
const LAYERS: &[&[&str]] = &[
    &["time", "jcs", "notify", "privfile", "apiclient_tls"],
    &["identity", "execution"],
    &["manifest"],
    &["runtime"],
    &["receipt"],
    &["job"],
    &["sched"],
    &["net", "store"],
    &["service"],
    &["api"],
    &["node", "apiclient"],
    &["config"],
    &["demo", "bench", "sim"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a source file belongs to (`net/executor.rs` → `net`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()
        .expect("component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<name>` in `text`, outside line comments.
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The violations in `(module, source text)` pairs, and the edges seen.
fn check(files: &[(String, String)]) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (from, text) in files {
        let Some(from_layer) = layer_of(from) else {
            violations.push(format!("{from}: not in LAYERS (give it a layer)"));
            continue;
        };
        for to in crate_refs(text) {
            if &to == from {
                continue;
            }
            edges.entry(from.clone()).or_default().push(to.clone());
            match layer_of(&to) {
                None => violations.push(format!("{from} uses {to}, which is not in LAYERS")),
                Some(l) if l >= from_layer => {
                    violations.push(format!("{from} uses {to}: {to} is not below {from}"))
                }
                Some(_) => {}
            }
        }
    }
    (violations, edges)
}

#[test]
fn modules_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            (
                top_module(&src, p),
                std::fs::read_to_string(p).expect("read"),
            )
        })
        .filter(|(m, _)| m != "lib" && m != "main")
        .collect();
    let (violations, edges) = check(&files);
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
    // The check sees real edges (a parser that found nothing would pass vacuously).
    assert!(
        edges["receipt"].iter().any(|t| t == "execution"),
        "{edges:?}"
    );
    assert!(edges["node"].iter().any(|t| t == "api"), "{edges:?}");
}

#[test]
fn the_check_catches_the_old_cycle() {
    // receipt -> runtime (Outcome) with runtime -> receipt (RuntimeInfo): refused.
    let files = vec![
        (
            "receipt".to_owned(),
            "use crate::runtime::Outcome;\n".to_owned(),
        ),
        (
            "runtime".to_owned(),
            "use crate::receipt::RuntimeInfo; // crate::api\n".to_owned(),
        ),
        ("brand_new".to_owned(), String::new()),
    ];
    let (violations, _) = check(&files);
    assert_eq!(
        violations,
        vec![
            "runtime uses receipt: receipt is not below runtime".to_owned(),
            "brand_new: not in LAYERS (give it a layer)".to_owned(),
        ]
    );
}
