//! Unit tests.

mod differential;
mod gen_check;
mod jepsen_parse;
mod kv_check;
mod kv_differential;
mod kv_model;
mod kv_ordered;
mod kv_txn;
mod ndjson;
mod register;
