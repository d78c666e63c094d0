//! Replays every input saved under fuzz/regressions/<target>/ through the
//! fuzz targets' own checks, so a crash once found stays fixed.

#![cfg(not(target_arch = "wasm32"))]

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let total = replay("jwt", checks::jwt)
        + replay("token_response", checks::token_response)
        + replay("record", checks::record)
        + replay("options", checks::options);
    assert!(total >= 7, "the seeded regressions are there ({total})");
}
