//! Linearizability checker (placeholder, being written).
