//! `vopr`: seed sweeps of the real kmb cluster under the deterministic simulator.
#[cfg(not(madsim))]
compile_error!(
    "vopr runs only inside the simulator. Build it with: \
     RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim \
     cargo build --release -p kmb-tests --features vopr --bin vopr \
     (or run scripts/vopr-quick.sh)"
);

fn main() {}
