//! Replays every file of every fuzz corpus (seeds, and crashes kept as regressions)
//! through its target, on the stable toolchain, as part of `cargo test`.

use std::path::Path;

#[test]
fn every_corpus_file_replays_without_a_defect() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, target) in plasm_fuzz::TARGETS.iter().chain(plasm_fuzz::ENGINE_TARGETS) {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).expect("read corpus file");
                let r = std::panic::catch_unwind(|| target(&bytes));
                assert!(r.is_ok(), "{name}: {} fails", e.path().display());
                n += 1;
            }
        }
        assert!(
            n > 0,
            "{name} has no corpus: a target without seeds tests nothing"
        );
        total += n;
    }
    println!("replayed {total} corpus files");
}

/// The records target's seeds reach its properties: the signed records read,
/// and every request decodes and is sane (a seed that fails early tests little).
#[test]
fn the_records_seeds_are_valid() {
    use futures::executor::block_on;
    use libp2p::request_response::Codec as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/records");
    for (name, form) in [
        ("acceptance", "plasm.acceptance/v1"),
        ("publication", "plasm.publication/v1"),
        ("audit", "plasm.audit/v1"),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("seed");
        let r = plasm::receipt::signed::read_any(&text).expect(name);
        assert_eq!(r.form, form);
    }
    let mut codec = plasm_fuzz::records_codec();
    for name in ["put", "get", "put-blob", "get-blob"] {
        let bytes = std::fs::read(dir.join(format!("request-{name}"))).expect("seed");
        let req = block_on(codec.read_request(
            &plasm::net::records::RECORDS_PROTOCOL,
            &mut futures::io::Cursor::new(bytes),
        ))
        .expect(name);
        assert!(req.is_sane(), "{name}");
    }
}
