//! kmb replicated key-value node.
