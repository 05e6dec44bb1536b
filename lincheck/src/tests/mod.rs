//! Unit tests.

mod differential;
mod gen_check;
mod jepsen_parse;
mod kv_check;
mod kv_model;
mod ndjson;
mod register;
