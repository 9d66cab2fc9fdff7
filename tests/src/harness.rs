//! A throwaway PostgreSQL server for the integration tests and the demo.
//!
//! [`PgServer::start`] runs `initdb` on a fresh directory under the system temp dir and starts the server on
//! a free port of 127.0.0.1; dropping the [`PgServer`] stops it and removes the directory. [`test_db`] and
//! [`shared_dsn`] honour `SANSPOOL_TEST_DSN`, so the same tests can run against an existing server.
//!
//! Cleanup does not rely on `Drop` alone. Each server has a watchdog: a small `sh` process, in its own
//! process group, that blocks reading a pipe whose only writer is this process, and on end-of-file stops the
//! server and removes its directory. Dropping the server closes the pipe and waits for the watchdog; if the
//! test process dies instead (abort, `SIGKILL`, a timeout), the kernel closes the pipe and the watchdog
//! cleans up all the same. The shared server lives in a static, which is never dropped: an `atexit` hook
//! drops it, so it is gone by the time the test binary has exited.
//!
//! As root, PostgreSQL refuses to run: the harness then runs `initdb` and `pg_ctl` through
//! `runuser -u postgres --` and hands the directory to the `postgres` user.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming an existing server to test against instead of a throwaway one.
pub const DSN_ENV: &str = "SANSPOOL_TEST_DSN";

/// Why the harness could not provide a server.
#[derive(Debug)]
pub enum HarnessError {
    /// A PostgreSQL program was found in none of the searched directories.
    MissingBinary {
        /// The program's name, such as `initdb`.
        name: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// A system call or a program launch failed.
    Io {
        /// What the harness was doing.
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A program ran and failed.
    Command {
        /// What the harness was doing.
        action: String,
        /// The exit status, the program's output and the tail of the server log.
        output: String,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingBinary { name, searched } => write!(
                f,
                "PostgreSQL program `{name}` not found on PATH or in /usr/lib/postgresql/*/bin \
                 ({} directories searched): install PostgreSQL (apt-get install -y postgresql) \
                 or set {DSN_ENV} to the connection string of a server to test against",
                searched.len()
            ),
            Self::Io { action, source } => write!(f, "{action}: {source}"),
            Self::Command { action, output } => write!(f, "{action} failed: {output}"),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let action = action.into();
    move |source| HarnessError::Io { action, source }
}

/// The directories searched for PostgreSQL programs: those of `PATH`, then `/usr/lib/postgresql/*/bin`,
/// highest version first.
pub fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            (version, entry.path().join("bin"))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs
}

/// Finds the executable file `name` in the first of `dirs` that holds one.
pub fn find_pg_bin_in(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, HarnessError> {
    let executable = |path: &PathBuf| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(executable)
        .ok_or_else(|| HarnessError::MissingBinary {
            name: name.into(),
            searched: dirs.to_vec(),
        })
}

/// Finds the PostgreSQL program `name` in [`pg_bin_dirs`].
pub fn find_pg_bin(name: &str) -> Result<PathBuf, HarnessError> {
    find_pg_bin_in(name, &pg_bin_dirs())
}

/// A throwaway PostgreSQL cluster: its own data directory, port and server process, all gone on drop.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    bin_dir: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    watchdog: Option<Child>,
    /// Server options beyond the harness's own (`-c ssl=on ...`).
    extra: String,
    tls: bool,
}

/// What a [`PgServer`] is started with beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// TLS on (`ssl=on`), with a certificate for `localhost` (and no other name) signed by a
    /// throwaway CA the harness makes with `openssl`; see [`PgServer::ca_cert`].
    pub tls: bool,
    /// More server options, as `postgres` takes them (`-c name=value ...`).
    pub options: String,
}

impl PgServer {
    /// Creates a fresh cluster in a new temp directory and starts it on a free port of 127.0.0.1
    /// (user `postgres`, trust authentication).
    pub fn start() -> Result<PgServer, HarnessError> {
        PgServer::start_with(Setup::default())
    }

    /// Like [`start`](Self::start), with the options of `setup`.
    pub fn start_with(setup: Setup) -> Result<PgServer, HarnessError> {
        let dirs = pg_bin_dirs();
        let initdb = find_pg_bin_in("initdb", &dirs)?;
        let initdb = initdb.canonicalize().unwrap_or(initdb);
        let bin_dir = initdb.parent().unwrap_or(Path::new("/")).to_path_buf();
        let pg_ctl = find_pg_bin_in("pg_ctl", &[std::slice::from_ref(&bin_dir), &dirs].concat())?;
        let dir = unique_dir();
        std::fs::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let mut server = PgServer {
            dir,
            bin_dir,
            pg_ctl,
            port: 0,
            as_postgres,
            running: false,
            watchdog: None,
            extra: String::new(),
            tls: false,
        };
        // From here on, dropping `server` (on any error below, too) removes the directory.
        server.watchdog = Some(server.spawn_watchdog()?);
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&server.dir);
            server.run(&mut chown, "chown the data directory to the postgres user")?;
        }
        let mut init = server.pg_command(&initdb);
        init.arg("-D").arg(&server.dir);
        init.args(["-A", "trust", "-U", "postgres", "-E", "UTF8"]);
        init.args(["--locale=C", "--no-sync"]);
        server.run(&mut init, "initdb")?;
        if setup.tls {
            server.make_certificates()?;
            server
                .extra
                .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
            server.tls = true;
        }
        if !setup.options.is_empty() {
            server.extra.push(' ');
            server.extra.push_str(&setup.options);
        }
        let mut attempts = 0;
        loop {
            // Another process may take the port between our probe and the server's bind: retry.
            server.port = free_port()?;
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) if attempts >= 4 => return Err(e),
                Err(_) => attempts += 1,
            }
        }
    }

    /// A libpq-style connection string for this server.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The TCP port the server listens on (kept across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory; it also holds the Unix socket and the server log (`log`).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the `initdb` and `pg_ctl` used (`psql` is usually there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether the server is running, as far as this handle's own starts and stops tell.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash would; does nothing if it is stopped.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.pg_command(&self.pg_ctl);
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(&mut cmd, "stop PostgreSQL")?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same data directory and port; does nothing if it is running.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-k '{}' -p {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off{}",
            self.dir.display(),
            self.port,
            self.extra
        );
        let mut cmd = self.pg_command(&self.pg_ctl);
        cmd.arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("log"));
        cmd.arg("-o").arg(options).args(["-w", "start"]);
        self.run(&mut cmd, &format!("start PostgreSQL on port {}", self.port))?;
        self.running = true;
        Ok(())
    }

    /// The CA certificate (PEM) that signed the server's certificate, when started with TLS.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("ca.crt"))
    }

    /// Puts `line` first in `pg_hba.conf`; it takes effect at the next reload (`pg_reload_conf()`)
    /// or start.
    pub fn prepend_hba(&self, line: &str) -> Result<(), HarnessError> {
        let path = self.dir.join("pg_hba.conf");
        let old =
            std::fs::read_to_string(&path).map_err(io_error(format!("read {}", path.display())))?;
        std::fs::write(&path, format!("{line}\n{old}"))
            .map_err(io_error(format!("write {}", path.display())))
    }

    /// A throwaway CA, and a server certificate for `localhost` it signs, in the data directory.
    fn make_certificates(&self) -> Result<(), HarnessError> {
        let dir = &self.dir;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(io_error("write the certificate extensions"))?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [(&str, Vec<&str>); 3] = [
            ("make the test CA", {
                let mut a = vec!["req", "-x509", "-sha256", "-days", "2"];
                a.extend(ec);
                a.extend([
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-subj",
                    "/CN=sanspool test CA",
                ]);
                a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
                a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
                a
            }),
            ("make the server's key", {
                let mut a = vec!["req", "-sha256"];
                a.extend(ec);
                a.extend([
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ]);
                a
            }),
            ("sign the server's certificate", {
                vec![
                    "x509",
                    "-req",
                    "-sha256",
                    "-days",
                    "2",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "server.crt",
                    "-extfile",
                    "server.ext",
                ]
            }),
        ];
        for (action, args) in steps {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(dir).stdin(Stdio::null());
            match cmd.output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    return Err(HarnessError::Command {
                        action: action.into(),
                        output: String::from_utf8_lossy(&out.stderr).into_owned(),
                    })
                }
                Err(e) => {
                    return Err(HarnessError::Io {
                        action: format!("{action}: run openssl (apt-get install openssl)"),
                        source: e,
                    })
                }
            }
        }
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("restrict the server key"))?;
        if self.as_postgres {
            let mut chown = Command::new("chown");
            chown
                .arg("postgres:postgres")
                .arg(&key)
                .arg(dir.join("server.crt"));
            self.run(&mut chown, "give the certificate to the postgres user")?;
        }
        Ok(())
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), while it runs.
    pub fn postmaster_pid(&self) -> Result<i32, HarnessError> {
        let file = self.dir.join("postmaster.pid");
        let text =
            std::fs::read_to_string(&file).map_err(io_error(format!("read {}", file.display())))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| HarnessError::Command {
                action: "read the postmaster's pid".into(),
                output: text.clone(),
            })
    }

    /// Freezes the postmaster (`SIGSTOP`): connections are accepted by the kernel and then never
    /// answered, as with a hung server. Resumed when the guard drops.
    pub fn freeze(&self) -> Result<Frozen, HarnessError> {
        Frozen::process(self.postmaster_pid()?)
    }

    /// Stops the server (immediately) and starts it again on the same data directory and port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.start_again()
    }

    /// Restarts the server as `pg_ctl restart -m fast` does: every session is sent a FATAL
    /// error (57P01, "terminating connection due to administrator command") and closed, then the
    /// server starts again on the same data directory and port. Returns once it accepts
    /// connections again; by then every old backend has exited.
    pub fn restart_fast(&mut self) -> Result<(), HarnessError> {
        if self.running {
            let mut cmd = self.pg_command(&self.pg_ctl);
            cmd.arg("-D")
                .arg(&self.dir)
                .args(["-m", "fast", "-w", "stop"]);
            self.run(&mut cmd, "stop PostgreSQL (fast)")?;
            self.running = false;
        }
        self.start_again()
    }

    /// A command running `program` as the user PostgreSQL must run as.
    fn pg_command(&self, program: &Path) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` to completion; a failure carries its output and the tail of the server log.
    fn run(&self, cmd: &mut Command, action: &str) -> Result<(), HarnessError> {
        let out = cmd.output().map_err(io_error(action))?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = self.log_tail(20);
        if !log.is_empty() {
            output = format!(
                "{output}--- tail of {} ---\n{log}",
                self.dir.join("log").display()
            );
        }
        Err(HarnessError::Command {
            action: action.into(),
            output,
        })
    }

    /// Spawns the process that stops the server and removes the directory once our end of its stdin closes.
    fn spawn_watchdog(&self) -> Result<Child, HarnessError> {
        const SCRIPT: &str = r#"trap '' HUP INT; dir=$1; shift; cat >/dev/null
"$@" -D "$dir" -m immediate -w stop >/dev/null 2>&1; rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SCRIPT, "sanspool-pg-watchdog"])
            .arg(&self.dir);
        if self.as_postgres {
            cmd.args(["runuser", "-u", "postgres", "--"]);
        }
        cmd.arg(&self.pg_ctl)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C meant for the tests must not kill the cleanup.
        cmd.process_group(0)
            .spawn()
            .map_err(io_error("spawn the cleanup watchdog (sh)"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A process stopped with `SIGSTOP`, continued (`SIGCONT`) on drop — also when a test fails, so
/// that the cleanup, which must signal the server, is never stuck behind a stopped process.
#[derive(Debug)]
pub struct Frozen {
    pid: i32,
}

impl Frozen {
    /// Stops process `pid` (a server backend of ours, say) until the guard drops.
    pub fn process(pid: i32) -> Result<Frozen, HarnessError> {
        signal(pid, libc::SIGSTOP)?;
        Ok(Frozen { pid })
    }

    /// The stopped process.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = signal(self.pid, libc::SIGCONT);
    }
}

fn signal(pid: i32, sig: libc::c_int) -> Result<(), HarnessError> {
    // SAFETY: kill has no memory preconditions; a bad pid is an error return.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(HarnessError::Io {
            action: format!("send signal {sig} to process {pid}"),
            source: io::Error::last_os_error(),
        })
    }
}

/// A TCP forwarder on 127.0.0.1 in front of a server (or anything listening), for faults of the
/// network between a client and its server: it can stop forwarding ([`freeze`](Self::freeze):
/// bytes are held, as on a hung link) and reset every connection ([`reset`](Self::reset): an RST
/// to both ends, as from a middlebox that dropped the connections). Two threads per connection
/// copy the bytes; dropping the proxy closes every connection and stops its threads.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: std::sync::Arc<ProxyShared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct ProxyShared {
    frozen: std::sync::atomic::AtomicBool,
    closing: std::sync::atomic::AtomicBool,
    links: Mutex<Vec<Link>>,
    /// Bytes forwarded from the server to clients, all connections together.
    to_clients: std::sync::atomic::AtomicU64,
}

/// One forwarded connection: both sockets, and the two threads copying between them.
#[derive(Debug)]
struct Link {
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    /// Set before the sockets are shut down for a reset: the copiers then leave without
    /// closing their halves (no FIN before the RST).
    reset: std::sync::Arc<std::sync::atomic::AtomicBool>,
    copiers: Vec<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding a free port of 127.0.0.1 to `upstream`.
    pub fn start(upstream: std::net::SocketAddr) -> Result<Proxy, HarnessError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_error("bind the proxy's port on 127.0.0.1"))?;
        let port = listener
            .local_addr()
            .map_err(io_error("read the proxy's port"))?
            .port();
        let shared = std::sync::Arc::new(ProxyShared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("harness-proxy".into())
                .spawn(move || accept(&listener, upstream, &shared))
                .map_err(io_error("spawn the proxy's thread"))?
        };
        Ok(Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `dsn` with its `host`, `hostaddr` and `port` pointed at the proxy (a later option wins,
    /// as in libpq).
    pub fn dsn(&self, dsn: &str) -> String {
        format!("{dsn} host=127.0.0.1 hostaddr=127.0.0.1 port={}", self.port)
    }

    /// Stops forwarding, both ways, until [`thaw`](Self::thaw): what is read is held, as on a
    /// link that stopped passing packets; new connections are still accepted.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Forwards again, what was held first.
    pub fn thaw(&self) {
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// Resets every connection open now: an RST to the client and to the server (`SO_LINGER`
    /// 0, then close). Returns once both sockets of each are closed, so the RSTs are sent.
    pub fn reset(&self) -> Result<usize, HarnessError> {
        let links = std::mem::take(&mut *self.shared.lock_links());
        let count = links.len();
        for link in links {
            link.reset.store(true, Ordering::SeqCst);
            for socket in [&link.client, &link.server] {
                socket2::SockRef::from(socket)
                    .set_linger(Some(std::time::Duration::ZERO))
                    .map_err(io_error("set SO_LINGER 0 on a proxied socket"))?;
                // Wakes the copier blocked reading it; sends nothing.
                let _ = socket.shutdown(std::net::Shutdown::Read);
            }
            let Link {
                client,
                server,
                copiers,
                ..
            } = link;
            for copier in copiers {
                let _ = copier.join();
            }
            // The last descriptors of each socket: closed with linger 0, an RST.
            drop((client, server));
        }
        Ok(count)
    }

    /// How many connections it forwards now.
    pub fn connections(&self) -> usize {
        let mut links = self.shared.lock_links();
        links.retain(|link| !link.copiers.iter().all(|c| c.is_finished()));
        links.len()
    }

    /// Bytes forwarded from the server to clients so far, all connections together (for a test
    /// to know that something the server sent has reached the client's socket).
    pub fn bytes_to_clients(&self) -> u64 {
        self.shared.to_clients.load(Ordering::SeqCst)
    }
}

impl ProxyShared {
    fn lock_links(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.thaw();
        // Wakes the acceptor.
        let _ = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for link in std::mem::take(&mut *self.shared.lock_links()) {
            for socket in [&link.client, &link.server] {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
            for copier in link.copiers {
                let _ = copier.join();
            }
        }
    }
}

/// The proxy's accept loop: each connection gets a connection to `upstream` and two copiers.
fn accept(
    listener: &TcpListener,
    upstream: std::net::SocketAddr,
    shared: &std::sync::Arc<ProxyShared>,
) {
    for client in listener.incoming() {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = std::net::TcpStream::connect(upstream) else {
            continue; // the client sees its connection closed, as with a refused one
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let reset = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut copiers = Vec::new();
        for (from, to, counted) in [(&client, &server, false), (&server, &client, true)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let (shared, reset) = (shared.clone(), reset.clone());
            let copier = std::thread::Builder::new()
                .name("harness-proxy-copy".into())
                .spawn(move || copy(from, to, &shared, &reset, counted));
            copiers.extend(copier.ok());
        }
        shared.lock_links().push(Link {
            client,
            server,
            reset,
            copiers,
        });
    }
}

/// Copies `from` to `to` until either ends; held while the proxy is frozen. At the end of
/// `from` it closes `to`'s sending half, so the end reaches the other side (but not on a reset).
fn copy(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    shared: &ProxyShared,
    reset: &std::sync::atomic::AtomicBool,
    counted: bool,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while shared.frozen.load(Ordering::SeqCst) && !reset.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if reset.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if counted {
            shared.to_clients.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    if !reset.load(Ordering::SeqCst) {
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

/// How a [`PgBouncer`] pools server connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction (and per statement outside transactions).
    Transaction,
}

/// The role PgBouncer logs in to the server as (a superuser the harness creates), so that the
/// server connections are told from others by `usename`: PgBouncer passes each client's
/// `application_name` on to the server connection it lends.
pub const BOUNCER_ROLE: &str = "sp_bouncer";

/// A throwaway PgBouncer in front of a [`PgServer`]: its own directory, port and process, all gone
/// on drop (a watchdog cleans up if the test process dies, as for the server).
#[derive(Debug)]
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    watchdog: Option<Child>,
}

impl PgBouncer {
    /// Starts PgBouncer on a free port of 127.0.0.1 for `server`'s `postgres` database (clients
    /// log in as `postgres`, trust), pooling in `mode` with `pool_size` server connections, which
    /// log in as [`BOUNCER_ROLE`].
    pub fn start(
        server: &PgServer,
        mode: PoolMode,
        pool_size: u32,
    ) -> Result<PgBouncer, HarnessError> {
        let program = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| HarnessError::MissingBinary {
                name: "pgbouncer (apt-get install -y pgbouncer)".into(),
                searched: vec!["/usr/sbin".into(), "/usr/bin".into()],
            })?;
        let psql = find_pg_bin_in("psql", std::slice::from_ref(&server.bin_dir))?;
        let mut create = Command::new(psql);
        create.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ]);
        create.args(["-p", &server.port.to_string(), "-d", "postgres", "-c"]);
        create.arg(format!(
            "DO $$ BEGIN CREATE ROLE {BOUNCER_ROLE} LOGIN SUPERUSER; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ));
        server.run(&mut create, "create the bouncer's role")?;
        let dir = unique_dir();
        std::fs::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let port = free_port()?;
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let ini = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={} dbname=postgres user={BOUNCER_ROLE}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n\
             max_client_conn = 200\nserver_reset_query = DISCARD ALL\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/log\npidfile = {dir}/pid\n",
            server.port(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(io_error("write pgbouncer.ini"))?;
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")
            .map_err(io_error("write userlist.txt"))?;
        let as_postgres = server.as_postgres;
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .output()
                .map_err(io_error("chown the pgbouncer directory"))?;
            if !out.status.success() {
                return Err(HarnessError::Command {
                    action: "chown the pgbouncer directory".into(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        // The watchdog runs PgBouncer (daemonized, it refuses to run as root) and, once our end
        // of its stdin closes, kills it and removes the directory.
        const SCRIPT: &str = r#"trap '' HUP INT; dir=$1; shift
"$@" -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; exit 1; }
echo started; cat >/dev/null
kill "$(cat "$dir/pid")" 2>/dev/null; sleep 0.2; rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SCRIPT, "sanspool-pgbouncer-watchdog"])
            .arg(&dir);
        if as_postgres {
            cmd.args(["runuser", "-u", "postgres", "--"]);
        }
        cmd.arg(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut watchdog = cmd
            .spawn()
            .map_err(io_error("spawn pgbouncer's watchdog"))?;
        let mut line = String::new();
        let stdout = watchdog.stdout.take().expect("piped");
        io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line)
            .map_err(io_error("wait for pgbouncer to start"))?;
        let mut bouncer = PgBouncer {
            dir,
            port,
            watchdog: Some(watchdog),
        };
        if line.trim() != "started" {
            let mut err = String::new();
            if let Some(mut stderr) = bouncer.watchdog.as_mut().and_then(|w| w.stderr.take()) {
                let _ = io::Read::read_to_string(&mut stderr, &mut err);
            }
            return Err(HarnessError::Command {
                action: "start pgbouncer".into(),
                output: format!("{err}{}", bouncer.log_tail(20)),
            });
        }
        // Daemonized once listening; still, wait until it accepts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(HarnessError::Command {
                    action: "wait for pgbouncer to listen".into(),
                    output: bouncer.log_tail(20),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// A libpq-style connection string for the `postgres` database through the bouncer.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The last `lines` lines of PgBouncer's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "sanspool-pg-{}-{count}-{nanos}",
        std::process::id()
    ))
}

fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("find a free port on 127.0.0.1"))
}

fn external_dsn() -> Option<String> {
    std::env::var(DSN_ENV)
        .ok()
        .filter(|dsn| !dsn.trim().is_empty())
}

/// A database for a test: an existing server named by `SANSPOOL_TEST_DSN`, or a throwaway one.
#[derive(Debug)]
pub enum TestDb {
    /// A throwaway server this process started and owns.
    Owned(PgServer),
    /// The connection string from `SANSPOOL_TEST_DSN`.
    External(String),
}

impl TestDb {
    /// The connection string of the database.
    pub fn dsn(&self) -> String {
        match self {
            Self::Owned(server) => server.dsn(),
            Self::External(dsn) => dsn.clone(),
        }
    }
}

/// The server named by `SANSPOOL_TEST_DSN` if set, else a new throwaway one. Tests that stop or restart
/// the server need one of their own: they call [`PgServer::start`] instead.
pub fn test_db() -> Result<TestDb, HarnessError> {
    match external_dsn() {
        Some(dsn) => Ok(TestDb::External(dsn)),
        None => PgServer::start().map(TestDb::Owned),
    }
}

type Shared = Result<(String, Mutex<Option<PgServer>>), String>;
static SHARED: OnceLock<Shared> = OnceLock::new();

/// The connection string of a server shared by all tests of this process that leave it running:
/// `SANSPOOL_TEST_DSN` if set, else a throwaway server started on first use and removed at exit.
///
/// # Panics
/// If no server can be started (the message says why and what to install).
pub fn shared_dsn() -> String {
    if let Some(dsn) = external_dsn() {
        return dsn;
    }
    let shared = SHARED.get_or_init(|| {
        let server = PgServer::start().map_err(|e| e.to_string())?;
        // SAFETY: registers a function without preconditions; it runs once, when the process exits.
        unsafe { libc::atexit(drop_shared) };
        Ok((server.dsn(), Mutex::new(Some(server))))
    });
    match shared {
        Ok((dsn, _)) => dsn.clone(),
        Err(e) => panic!("cannot start the shared PostgreSQL server: {e}"),
    }
}

extern "C" fn drop_shared() {
    if let Some(Ok((_, server))) = SHARED.get() {
        // Never block at exit; should the lock be held, the watchdog still cleans up once we are gone.
        if let Ok(mut server) = server.try_lock() {
            drop(server.take());
        }
    }
}
