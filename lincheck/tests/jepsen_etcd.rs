//! Runs the checker over the 102 Jepsen etcd histories and compares with Porcupine's
//! expected verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lincheck::{check, jepsen, CheckOptions, Verdict};

fn data_dir() -> PathBuf {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/jepsen-etcd"
    ));
    assert!(
        dir.join("expected.txt").is_file(),
        "Jepsen etcd histories not found: expected {} (with expected.txt and etcd_NNN.log) \
         beside the repository clone",
        dir.display()
    );
    dir.to_path_buf()
}

fn expected_verdicts(dir: &Path) -> BTreeMap<u32, bool> {
    let text = std::fs::read_to_string(dir.join("expected.txt")).expect("read expected.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once(' ').expect("`N true|false`");
            (n.parse().expect("index"), v.trim() == "true")
        })
        .collect()
}

/// Every etcd history gets Porcupine's verdict; etcd_095 (no verdict) just checks.
#[test]
fn jepsen_etcd_histories_match_expected_verdicts() {
    let dir = data_dir();
    let expected = expected_verdicts(&dir);
    assert_eq!(expected.len(), 102);
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for n in 0..=102u32 {
        let path = dir.join(format!("etcd_{n:03}.log"));
        if !path.is_file() {
            assert!(!expected.contains_key(&n), "{} is missing", path.display());
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read history");
        let ops = jepsen::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let verdict = check(&jepsen::Register, &ops, &CheckOptions::default());
        checked += 1;
        let got = match &verdict {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable(_) => Some(false),
            Verdict::Unknown { .. } => None,
        };
        match expected.get(&n) {
            Some(&want) if got != Some(want) => mismatches.push(format!(
                "etcd_{n:03}: expected linearizable={want}, got {verdict:?}"
            )),
            Some(_) => {}
            None => assert!(got.is_some(), "etcd_{n:03}: {verdict:?}"),
        }
    }
    assert!(checked >= 102, "only {checked} histories found");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
