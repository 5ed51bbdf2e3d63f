//! The stored and exported bytes of every event kind stay as they were:
//! `samples.jsonl` holds hand-written events of each kind (and the shapes
//! older stores hold), `samples.golden.jsonl` what serde wrote for them
//! before events became named structs. Set `MEMOFAB_BLESS=1` to rewrite it
//! after a deliberate change of the stored form.

use super::*;

const SAMPLES: &str = include_str!("samples.jsonl");
const GOLDEN: &str = include_str!("samples.golden.jsonl");

fn reencoded() -> String {
    let mut out = String::new();
    for line in SAMPLES.lines() {
        let event: Event = serde_json::from_str(line).unwrap();
        out.push_str(&serde_json::to_string(&event).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn every_kind_serializes_to_the_recorded_bytes() {
    let out = reencoded();
    if std::env::var_os("MEMOFAB_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/domain/event/samples.golden.jsonl"
        );
        std::fs::write(path, &out).unwrap();
        return;
    }
    assert_eq!(out, GOLDEN);
}
