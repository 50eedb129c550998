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
