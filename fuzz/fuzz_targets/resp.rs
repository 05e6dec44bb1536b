#![no_main]
//! `cargo fuzz run resp`: the check is `kmb_node::fuzzing::resp` (also replayed over the corpus
//! by `kmb-node/tests/fuzz_corpus.rs`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmb_node::fuzzing::resp(data));
