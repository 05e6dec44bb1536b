#![no_main]
//! `cargo fuzz run command_kv`: the check is `kmb_node::fuzzing::command_kv` (also replayed over the corpus
//! by `kmb-node/tests/fuzz_corpus.rs`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmb_node::fuzzing::command_kv(data));
