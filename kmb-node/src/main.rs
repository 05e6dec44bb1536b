//! `kmb-node`: format a data file, start a replica, or check a data file offline.
//!
//! ```text
//! kmb-node format --cluster 1 --replica 0 --replica-count 3 data/r0.kmb
//! kmb-node start --addresses 3001,3002,3003 --client-addresses 6381,6382,6383 data/r0.kmb
//! kmb-node verify data/r0.kmb      # exit 0: intact; exit 1: damaged or unreadable
//! kmb-node inspect data/r0.kmb     # the summary plus every superblock copy and WAL slot
//! ```
//!
//! Addresses given as a bare port mean 127.0.0.1:port: by default nothing listens beyond the
//! loopback interface. Bad configuration is reported in one line with a non-zero exit.

#[cfg(madsim)]
fn main() {
    eprintln!("kmb-node: this is the production binary; build it without --cfg madsim");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    production::main()
}

#[cfg(not(madsim))]
mod production {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use clap::{Parser, Subcommand, ValueEnum};
    use kmb_node::auth::ClusterKey;
    use kmb_node::connection::Password;
    use kmb_node::node::{self, Limits, NodeConfig};
    use kmb_node::storage::{Identity, Storage, StorageConfig};
    use sim_runtime::time::Duration;

    /// kmb: a replicated key-value node that speaks the Redis protocol.
    #[derive(Parser, Debug)]
    #[command(name = "kmb-node", version)]
    struct Args {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Geometry {
        /// 1024 WAL slots of 64 KiB.
        Production,
        /// 64 WAL slots of 4 KiB (tests, tiny deployments).
        Small,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        /// Create a replica's data file (refuses to overwrite an existing one).
        Format {
            /// Cluster id: every replica of a cluster uses the same one.
            #[arg(long)]
            cluster: u64,
            /// This replica's index, 0-based.
            #[arg(long)]
            replica: u8,
            /// Number of replicas: 1, 3 or 5.
            #[arg(long)]
            replica_count: u8,
            /// WAL geometry.
            #[arg(long, value_enum, default_value = "production")]
            geometry: Geometry,
            /// Use the cluster key in this file (the key file of a replica already formatted)
            /// instead of generating a new one. Every replica of a cluster needs the same key.
            #[arg(long)]
            key_from: Option<PathBuf>,
            /// The data file to create. The cluster key is written next to it, to
            /// `<data>.key` (mode 0600).
            data: PathBuf,
        },
        /// Run a replica.
        Start {
            /// Every replica's peer address, in replica order (host:port or a bare port for
            /// 127.0.0.1).
            #[arg(long, value_delimiter = ',', required = true)]
            addresses: Vec<String>,
            /// Every replica's client (RESP) address, in replica order; this replica listens
            /// on its own, and redirects name the primary's.
            #[arg(long, value_delimiter = ',', required = true)]
            client_addresses: Vec<String>,
            /// Length of a protocol tick in milliseconds.
            #[arg(long, default_value_t = 10)]
            tick_ms: u64,
            /// Threads that run the network and the protocol (1..=64). One — the default — is
            /// the fastest on few cores: the protocol runs on one thread in any case, and tasks
            /// on one thread wake each other without a system call. More spread the client
            /// connections' parsing over cores. The log's writes and fsyncs have a thread of
            /// their own either way.
            #[arg(long, default_value_t = 1)]
            worker_threads: usize,
            /// The cluster key file (default: `<data>.key`, written by `kmb-node format`). It
            /// must not be readable by group or others.
            #[arg(long)]
            key_file: Option<PathBuf>,
            /// A file holding the client password (Redis `requirepass`; one line, a trailing
            /// newline is ignored). Clients must `AUTH` before other commands. The file must
            /// not be readable by group or others. Without it, clients need no password.
            #[arg(long)]
            requirepass_file: Option<PathBuf>,
            #[command(flatten)]
            limits: LimitArgs,
            /// The formatted data file.
            data: PathBuf,
        },
        /// Check a stopped replica's data file offline (superblock copies, WAL headers and
        /// prepares, hash chain, checkpoint); exit non-zero on damage. Writes nothing.
        Verify {
            /// The data file.
            data: PathBuf,
        },
        /// Print what a stopped replica's data file holds: the verify summary plus every
        /// superblock copy and non-blank WAL slot. Writes nothing.
        Inspect {
            /// The data file.
            data: PathBuf,
        },
    }

    /// Resource bounds (defaults: `kmb_node::node::Limits::default()`).
    #[derive(clap::Args, Debug)]
    struct LimitArgs {
        /// Inbound peer connections in total (handshaking or authenticated).
        #[arg(long, default_value_t = Limits::default().peer_connections_max)]
        peer_connections_max: usize,
        /// Inbound peer connections from one IP address.
        #[arg(long, default_value_t = Limits::default().peer_connections_per_address_max)]
        peer_connections_per_address_max: usize,
        /// Milliseconds a peer connection has to complete its handshake.
        #[arg(long, default_value_t = Limits::default().peer_handshake_timeout.as_millis() as u64)]
        peer_handshake_timeout_ms: u64,
        /// Client connections; more are answered `-ERR max number of clients reached`.
        #[arg(long, default_value_t = Limits::default().client_connections_max)]
        client_connections_max: usize,
        /// Seconds a client connection may send nothing before it is closed.
        #[arg(long, default_value_t = Limits::default().client_idle_timeout.as_secs())]
        client_idle_timeout_secs: u64,
        /// Bytes a client connection may buffer for one command (a larger one is a protocol
        /// error).
        #[arg(long, default_value_t = Limits::default().client_buffer_max)]
        client_buffer_max: usize,
    }

    impl LimitArgs {
        fn limits(&self) -> Result<Limits, String> {
            for (name, value) in [
                ("--peer-connections-max", self.peer_connections_max as u64),
                (
                    "--peer-connections-per-address-max",
                    self.peer_connections_per_address_max as u64,
                ),
                (
                    "--peer-handshake-timeout-ms",
                    self.peer_handshake_timeout_ms,
                ),
                (
                    "--client-connections-max",
                    self.client_connections_max as u64,
                ),
                ("--client-idle-timeout-secs", self.client_idle_timeout_secs),
                ("--client-buffer-max", self.client_buffer_max as u64),
            ] {
                if value == 0 {
                    return Err(format!("{name} must be at least 1"));
                }
            }
            if self.client_buffer_max < 64 * 1024 {
                return Err(format!(
                    "--client-buffer-max {} is below 65536: too small for an inline command",
                    self.client_buffer_max
                ));
            }
            Ok(Limits {
                peer_connections_max: self.peer_connections_max,
                peer_connections_per_address_max: self.peer_connections_per_address_max,
                peer_handshake_timeout: Duration::from_millis(self.peer_handshake_timeout_ms),
                client_connections_max: self.client_connections_max,
                client_idle_timeout: Duration::from_secs(self.client_idle_timeout_secs),
                client_buffer_max: self.client_buffer_max,
            })
        }
    }

    fn parse_address(s: &str) -> Result<SocketAddr, String> {
        if let Ok(port) = s.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
        s.parse::<SocketAddr>()
            .map_err(|_| format!("invalid address {s:?}: expected host:port or a port"))
    }

    fn parse_addresses(list: &[String]) -> Result<Vec<SocketAddr>, String> {
        list.iter().map(|s| parse_address(s.trim())).collect()
    }

    /// `<data>.key`: where `format` writes the cluster key and `start` reads it by default.
    fn default_key_path(data: &Path) -> PathBuf {
        let mut path = data.as_os_str().to_owned();
        path.push(".key");
        PathBuf::from(path)
    }

    /// Read a cluster key file, refusing one that group or others can read.
    fn read_key(path: &Path) -> Result<ClusterKey, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            format!(
                "cannot read the cluster key file {}: {e} (`kmb-node format` writes it; \
                 --key-file names another)",
                path.display()
            )
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the cluster key file {} is readable by others (mode {mode:o}): chmod 600 it",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cluster key file {}: {e}", path.display()))?;
        ClusterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Read the client password file, refusing one that group or others can read.
    fn read_password(path: &Path) -> Result<Password, String> {
        use std::os::unix::fs::PermissionsExt;
        let what =
            |e: std::io::Error| format!("cannot read the password file {}: {e}", path.display());
        let mode = std::fs::metadata(path).map_err(what)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the password file {} is readable by others (mode {mode:o}): chmod 600 it",
                path.display()
            ));
        }
        let mut text = std::fs::read(path).map_err(what)?;
        while matches!(text.last(), Some(b'\n' | b'\r')) {
            text.pop();
        }
        if text.is_empty() {
            return Err(format!("the password file {} is empty", path.display()));
        }
        Ok(Password::new(text))
    }

    /// Write `key` to a new file at `path`, mode 0600, durably.
    fn write_key(path: &Path, key: &ClusterKey) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(key.to_hex().as_bytes())?;
            file.sync_all()?;
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("cannot write the cluster key {}: {e}", path.display()))
    }

    async fn format(
        cluster: u64,
        replica: u8,
        replica_count: u8,
        geometry: Geometry,
        key_from: Option<PathBuf>,
        data: PathBuf,
    ) -> Result<(), String> {
        if !matches!(replica_count, 1 | 3 | 5) {
            return Err(format!(
                "--replica-count must be 1, 3 or 5, not {replica_count}"
            ));
        }
        if replica >= replica_count {
            return Err(format!(
                "--replica {replica} is out of range for {replica_count} replicas"
            ));
        }
        if data.exists() {
            return Err(format!(
                "{} already exists: refusing to overwrite a data file",
                data.display()
            ));
        }
        let key_path = default_key_path(&data);
        if key_path.exists() {
            return Err(format!(
                "{} already exists: refusing to overwrite a cluster key",
                key_path.display()
            ));
        }
        let key = match &key_from {
            Some(from) => read_key(from)?,
            None => ClusterKey::generate(),
        };
        let config = match geometry {
            Geometry::Production => StorageConfig::PRODUCTION,
            Geometry::Small => StorageConfig::SIMULATION,
        };
        write_key(&key_path, &key)?;
        let identity = Identity {
            cluster,
            replica,
            replica_count,
        };
        Storage::format(&data, identity, config)
            .await
            .map_err(|e| format!("cannot format {}: {e}", data.display()))?;
        println!(
            "formatted {} (cluster {cluster}, replica {replica} of {replica_count}); cluster key {} {}",
            data.display(),
            if key_from.is_some() { "copied to" } else { "generated in" },
            key_path.display()
        );
        Ok(())
    }

    /// `verify` (and `inspect` with `detail`): print the report; an error if damaged.
    async fn verify(data: PathBuf, detail: bool) -> Result<(), String> {
        let ex = Storage::examine(&data)
            .await
            .map_err(|e| format!("cannot verify {}: {e}", data.display()))?;
        let report = kmb_node::storage::verify::verify(&ex);
        println!("{}", data.display());
        for line in &report.summary {
            println!("  {line}");
        }
        for line in &report.notes {
            println!("  note: {line}");
        }
        for line in &report.damage {
            println!("  DAMAGE: {line}");
        }
        if detail {
            for line in kmb_node::storage::verify::inspect(&ex) {
                println!("  {line}");
            }
        }
        match report.damage.first() {
            None => {
                println!("ok: {} verifies", data.display());
                Ok(())
            }
            Some(first) if report.damage.len() == 1 => {
                Err(format!("{} is damaged: {first}", data.display()))
            }
            Some(first) => Err(format!(
                "{} is damaged: {first} (and {} more problems above)",
                data.display(),
                report.damage.len() - 1
            )),
        }
    }

    async fn shutdown_signal() {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }

    async fn start(
        addresses: Vec<String>,
        client_addresses: Vec<String>,
        tick_ms: u64,
        key_file: Option<PathBuf>,
        requirepass_file: Option<PathBuf>,
        limits: LimitArgs,
        data: PathBuf,
    ) -> Result<(), String> {
        let requirepass = requirepass_file.as_deref().map(read_password).transpose()?;
        let limits = limits.limits()?;
        let replica_addresses = parse_addresses(&addresses)?;
        let client_addresses = parse_addresses(&client_addresses)?;
        if replica_addresses.len() != client_addresses.len() {
            return Err(format!(
                "{} peer addresses but {} client addresses: give one of each per replica",
                replica_addresses.len(),
                client_addresses.len()
            ));
        }
        if !(1..=1000).contains(&tick_ms) {
            return Err(format!("--tick-ms {tick_ms} must be within 1..=1000"));
        }
        if !data.exists() {
            return Err(format!(
                "{} does not exist: create it with `kmb-node format` first",
                data.display()
            ));
        }
        let cluster_key = read_key(&key_file.unwrap_or_else(|| default_key_path(&data)))?;
        planted_bug()?;
        ensure_descriptors(limits.descriptors_needed(replica_addresses.len()))?;
        let config = NodeConfig {
            data_path: data,
            replica_addresses,
            client_addresses,
            listen_peer: None,
            listen_client: None,
            tick: Duration::from_millis(tick_ms),
            cluster_key,
            limits,
            requirepass,
        };
        node::run(config, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    }

    /// A `chaos-mutation` build: say loudly which planted bug `KMB_MUTATION` selects, and
    /// refuse a name that is not one of the production mutation points.
    #[cfg(feature = "chaos-mutation")]
    fn planted_bug() -> Result<(), String> {
        use kmb_node::mutation::{from_env, PRODUCTION_POINTS};
        let Ok(name) = std::env::var("KMB_MUTATION") else {
            tracing::warn!(
                "built with the chaos-mutation feature; KMB_MUTATION unset: no planted bug"
            );
            return Ok(());
        };
        match from_env() {
            Some(m) if PRODUCTION_POINTS.contains(&m) => {
                tracing::warn!("PLANTED BUG ACTIVE (KMB_MUTATION={m}): {}", m.description());
                Ok(())
            }
            _ => Err(format!(
                "KMB_MUTATION={name:?} is not a production mutation point (one of: {})",
                PRODUCTION_POINTS.map(|m| m.name()).join(", ")
            )),
        }
    }

    #[cfg(not(feature = "chaos-mutation"))]
    fn planted_bug() -> Result<(), String> {
        match std::env::var("KMB_MUTATION") {
            Ok(name) => Err(format!(
                "KMB_MUTATION={name:?} is set, but this kmb-node was built without the \
                 chaos-mutation feature"
            )),
            Err(_) => Ok(()),
        }
    }

    /// Make the open-file limit cover `needed` descriptors: raise the soft limit up to the
    /// hard one if it is lower, and refuse to start if even the hard limit is too low (a node
    /// out of descriptors would go on leading the cluster while refusing every client).
    fn ensure_descriptors(needed: u64) -> Result<(), String> {
        use rlimit::Resource;
        let (soft, hard) = Resource::NOFILE
            .get()
            .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
        if soft >= needed {
            return Ok(());
        }
        if hard < needed {
            return Err(format!(
                "the open-file limit is {hard} (ulimit -Hn) but the connection bounds need \
                 {needed} descriptors (--client-connections-max + --peer-connections-max + \
                 replicas + 32): raise the limit or lower the bounds"
            ));
        }
        Resource::NOFILE
            .set(needed, hard)
            .map_err(|e| format!("cannot raise the open-file limit to {needed}: {e}"))?;
        tracing::info!(from = soft, to = needed, "raised the open-file soft limit");
        Ok(())
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
        let threads = match args.command {
            Cmd::Start { worker_threads, .. } => worker_threads,
            _ => 1,
        };
        if !(1..=64).contains(&threads) {
            eprintln!("kmb-node: error: --worker-threads {threads} must be within 1..=64");
            return ExitCode::from(2);
        }
        let built = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        };
        let runtime = match built {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("kmb-node: error: cannot start the runtime: {e}");
                return ExitCode::from(1);
            }
        };
        let result = runtime.block_on(async {
            match args.command {
                Cmd::Format {
                    cluster,
                    replica,
                    replica_count,
                    geometry,
                    key_from,
                    data,
                } => format(cluster, replica, replica_count, geometry, key_from, data).await,
                Cmd::Start {
                    addresses,
                    client_addresses,
                    tick_ms,
                    worker_threads: _,
                    key_file,
                    requirepass_file,
                    limits,
                    data,
                } => {
                    start(
                        addresses,
                        client_addresses,
                        tick_ms,
                        key_file,
                        requirepass_file,
                        limits,
                        data,
                    )
                    .await
                }
                Cmd::Verify { data } => verify(data, false).await,
                Cmd::Inspect { data } => verify(data, true).await,
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kmb-node: error: {e}");
                ExitCode::from(1)
            }
        }
    }
}
