#![no_main]
//! `cargo fuzz run frame`: the check is `kmb_node::fuzzing::frame` (also replayed over the corpus
//! by `kmb-node/tests/fuzz_corpus.rs`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmb_node::fuzzing::frame(data));
