//! Tasks: tokio's in production, madsim's (deterministic, killed with their node) in simulation.

pub use tokio::task::{spawn, yield_now, JoinHandle};
