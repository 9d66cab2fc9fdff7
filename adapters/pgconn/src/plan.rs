//! [`Plan`]: which addresses an open tries, in which order — libpq's rules for `host`,
//! `hostaddr`, `port` and `load_balance_hosts`, as tokio-postgres follows them — kept as a
//! small machine that leaves its DNS lookups and connects to the caller, so that the blocking
//! and the async connector try the same addresses in the same order. And the I/O both share:
//! a bounded lookup ([`Lookup`]) and opening a socket.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts};

use crate::error::{Error, Op};
use crate::socket::PgSocket;

/// Where a connection goes: where its cancel requests go too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket's path (`<host directory>/.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// One address to try, and the server's name there (for TLS).
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) addr: Addr,
    pub(crate) domain: String,
    /// libpq's `prefer`, second try: plaintext after a failed TLS handshake.
    pub(crate) plaintext: bool,
}

impl Target {
    /// The address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }
}

/// A name to resolve before its addresses can be tried.
#[derive(Clone, Debug)]
pub struct Lookup {
    host: String,
    port: u16,
}

/// What a [`Plan`] wants done next.
#[derive(Debug)]
pub enum Step {
    /// Resolve this name, then report to [`Plan::resolved`].
    Resolve(Lookup),
    /// Try this address; report a failure to [`Plan::failed`].
    Connect(Target),
    /// Nothing is left to try: the last failure.
    Failed(Error),
}

/// A failed try, as [`Plan::failed`] takes it.
#[derive(Debug)]
pub struct Failure {
    pub(crate) target: Target,
    pub(crate) error: Error,
    /// The TLS handshake itself failed (`prefer` then tries once more without TLS).
    pub(crate) handshake: bool,
}

impl Failure {
    /// A failure after the connection was made (`target_session_attrs` not met, say).
    pub fn after_connect(target: Target, error: Error) -> Failure {
        Failure {
            target,
            error,
            handshake: false,
        }
    }
}

/// The addresses an open tries: the hosts in order (or shuffled, `load_balance_hosts=random`),
/// each name's addresses in the resolver's order (or shuffled), and under `sslmode=prefer` an
/// address whose TLS handshake failed once more in plaintext (libpq's rule). Made by
/// [`Opener::plan`](crate::Opener::plan).
#[derive(Debug)]
pub struct Plan {
    hosts: VecDeque<(Option<Host>, Option<IpAddr>, u16)>,
    /// The current host's addresses, and its name.
    addrs: VecDeque<Addr>,
    domain: String,
    random: bool,
    prefer: bool,
    retry: Option<Target>,
    last: Option<Error>,
}

impl Plan {
    /// The plan for `config`'s hosts; `prefer`: the user's `sslmode` is `prefer`.
    pub(crate) fn new(config: &tokio_postgres::Config, prefer: bool) -> Result<Plan, Error> {
        let (hosts, hostaddrs) = (config.get_hosts(), config.get_hostaddrs());
        if hosts.is_empty() && hostaddrs.is_empty() {
            return Err(Error::InvalidConfig(
                "both host and hostaddr are missing".into(),
            ));
        }
        if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
            return Err(Error::InvalidConfig(
                "the numbers of hosts and hostaddrs differ".into(),
            ));
        }
        let count = hosts.len().max(hostaddrs.len());
        let ports = config.get_ports();
        if ports.len() > 1 && ports.len() != count {
            return Err(Error::InvalidConfig("invalid number of ports".into()));
        }
        let random = config.get_load_balance_hosts() == LoadBalanceHosts::Random;
        let mut order: Vec<usize> = (0..count).collect();
        if random {
            shuffle(&mut order);
        }
        let hosts = order
            .into_iter()
            .map(|i| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                (hosts.get(i).cloned(), hostaddrs.get(i).copied(), port)
            })
            .collect();
        Ok(Plan {
            hosts,
            addrs: VecDeque::new(),
            domain: String::new(),
            random,
            prefer,
            retry: None,
            last: None,
        })
    }

    /// What to do next.
    pub fn step(&mut self) -> Step {
        if let Some(target) = self.retry.take() {
            return Step::Connect(target);
        }
        if let Some(addr) = self.addrs.pop_front() {
            return Step::Connect(self.target(addr));
        }
        let Some((host, hostaddr, port)) = self.hosts.pop_front() else {
            return Step::Failed(self.last.take().unwrap_or_else(|| {
                Error::Connect(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no address to connect to",
                ))
            }));
        };
        // As libpq: the host names the server (for TLS), hostaddr says where to connect.
        match (host, hostaddr) {
            (Some(Host::Unix(dir)), _) => {
                self.domain = String::new();
                Step::Connect(self.target(Addr::Unix(dir.join(format!(".s.PGSQL.{port}")))))
            }
            (host, Some(ip)) => {
                self.domain = match host {
                    Some(Host::Tcp(name)) => name,
                    _ => ip.to_string(),
                };
                Step::Connect(self.target(Addr::Tcp(SocketAddr::new(ip, port))))
            }
            (Some(Host::Tcp(name)), None) => {
                self.domain = name.clone();
                match name.parse::<IpAddr>() {
                    Ok(ip) => Step::Connect(self.target(Addr::Tcp(SocketAddr::new(ip, port)))),
                    Err(_) => Step::Resolve(Lookup { host: name, port }),
                }
            }
            (None, None) => unreachable!("a host or a hostaddr at every index below count"),
        }
    }

    fn target(&self, addr: Addr) -> Target {
        Target {
            addr,
            domain: self.domain.clone(),
            plaintext: false,
        }
    }

    /// The addresses of the name of the last [`Step::Resolve`], or why there are none.
    pub fn resolved(&mut self, found: Result<Vec<SocketAddr>, Error>) {
        match found {
            Ok(found) => {
                let mut addrs: Vec<Addr> = found.into_iter().map(Addr::Tcp).collect();
                if self.random {
                    shuffle(&mut addrs);
                }
                self.addrs = addrs.into();
            }
            Err(e) => self.last = Some(e),
        }
    }

    /// A try failed: the next step moves on (or, for `prefer` after a failed handshake, tries
    /// the same address in plaintext).
    pub fn failed(&mut self, failure: Failure) {
        let Failure {
            target,
            error,
            handshake,
        } = failure;
        if handshake && self.prefer && !target.plaintext {
            self.retry = Some(Target {
                plaintext: true,
                ..target
            });
        }
        self.last = Some(error);
    }
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        items.swap(i, (h.finish() % (i as u64 + 1)) as usize);
    }
}

impl Lookup {
    /// The name's addresses, within `bound`.
    pub async fn resolve(&self, bound: Duration) -> Result<Vec<SocketAddr>, Error> {
        let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
        match tokio::time::timeout(bound, lookup).await {
            Ok(found) => found.map(Iterator::collect).map_err(Error::Connect),
            Err(_) => Err(Error::TimedOut(Op::Connect)),
        }
    }

    /// [`resolve`](Self::resolve) for a caller outside any runtime (the blocking connector): on
    /// a runtime of its own, which does not wait for a lookup cut off at the bound.
    pub fn resolve_blocking(&self, bound: Duration) -> Result<Vec<SocketAddr>, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Connect)?;
        let found = runtime.block_on(self.resolve(bound));
        // The resolver's thread may still be blocked in the lookup: leave it be.
        runtime.shutdown_background();
        found
    }
}

/// Opens a socket to `addr` (TCP with `nodelay` and the configuration's keepalive and user
/// timeout, as tokio-postgres sets them), by `deadline` if there is one.
pub(crate) async fn socket(
    addr: &Addr,
    config: &tokio_postgres::Config,
    deadline: Option<Instant>,
) -> Result<PgSocket, Error> {
    let connect = async {
        match addr {
            Addr::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(Error::Connect)?;
                stream.set_nodelay(true).map_err(Error::Connect)?;
                keepalive(&stream, config).map_err(Error::Connect)?;
                Ok(PgSocket::tcp(stream))
            }
            Addr::Unix(path) => UnixStream::connect(path)
                .await
                .map(PgSocket::unix)
                .map_err(Error::Connect),
        }
    };
    match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), connect)
            .await
            .unwrap_or(Err(Error::TimedOut(Op::Connect))),
        None => connect.await,
    }
}

/// TCP keepalive and user timeout as the configuration asks (as tokio-postgres sets them).
fn keepalive(stream: &TcpStream, config: &tokio_postgres::Config) -> io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    #[cfg(target_os = "linux")]
    sock.set_tcp_user_timeout(config.get_tcp_user_timeout().copied())?;
    if config.get_keepalives() {
        let mut ka = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            ka = ka.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            ka = ka.with_retries(retries);
        }
        sock.set_tcp_keepalive(&ka)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dsn: &str) -> Plan {
        Plan::new(&dsn.parse().unwrap(), true).unwrap()
    }

    fn connect(step: Step) -> Target {
        match step {
            Step::Connect(target) => target,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosts_in_order_with_their_ports_and_names() {
        let mut p = plan("host=/run/pg,10.0.0.1,db.example port=5433,5434,5435");
        let unix = connect(p.step());
        assert_eq!(unix.addr, Addr::Unix("/run/pg/.s.PGSQL.5433".into()));
        p.failed(Failure::after_connect(unix, Error::Closed));
        let ip = connect(p.step());
        assert_eq!(ip.addr, Addr::Tcp("10.0.0.1:5434".parse().unwrap()));
        assert_eq!(ip.domain, "10.0.0.1");
        p.failed(Failure::after_connect(ip, Error::Closed));
        match p.step() {
            Step::Resolve(lookup) => {
                assert_eq!((lookup.host.as_str(), lookup.port), ("db.example", 5435))
            }
            other => panic!("{other:?}"),
        }
        p.resolved(Ok(vec![
            "10.0.0.2:5435".parse().unwrap(),
            "10.0.0.3:5435".parse().unwrap(),
        ]));
        for ip in ["10.0.0.2:5435", "10.0.0.3:5435"] {
            let t = connect(p.step());
            assert_eq!(
                (t.addr.clone(), t.domain.as_str()),
                (Addr::Tcp(ip.parse().unwrap()), "db.example")
            );
            p.failed(Failure::after_connect(t, Error::TimedOut(Op::Connect)));
        }
        assert!(matches!(
            p.step(),
            Step::Failed(Error::TimedOut(Op::Connect))
        ));
    }

    #[test]
    fn hostaddr_connects_and_host_names() {
        let mut p = plan("host=db.example hostaddr=10.0.0.9");
        let t = connect(p.step());
        assert_eq!(t.addr, Addr::Tcp("10.0.0.9:5432".parse().unwrap()));
        assert_eq!(t.domain, "db.example");
    }

    #[test]
    fn prefer_retries_a_failed_handshake_once_in_plaintext() {
        let mut p = plan("host=10.0.0.1");
        let t = connect(p.step());
        p.failed(Failure {
            target: t,
            error: Error::Closed,
            handshake: true,
        });
        let again = connect(p.step());
        assert!(again.plaintext);
        p.failed(Failure {
            target: again,
            error: Error::Closed,
            handshake: true,
        });
        assert!(matches!(p.step(), Step::Failed(_)));
        // Not under require.
        let mut p = Plan::new(&"host=10.0.0.1".parse().unwrap(), false).unwrap();
        let t = connect(p.step());
        p.failed(Failure {
            target: t,
            error: Error::Closed,
            handshake: true,
        });
        assert!(matches!(p.step(), Step::Failed(_)));
    }

    #[test]
    fn a_failed_lookup_moves_on() {
        let mut p = plan("host=nowhere.invalid,10.0.0.1");
        assert!(matches!(p.step(), Step::Resolve(_)));
        p.resolved(Err(Error::Closed));
        assert_eq!(
            connect(p.step()).addr,
            Addr::Tcp("10.0.0.1:5432".parse().unwrap())
        );
    }

    #[test]
    fn bad_host_lists_are_refused() {
        for dsn in [
            "user=x",
            "host=a,b hostaddr=10.0.0.1",
            "host=a,b,c port=1,2",
        ] {
            let err = Plan::new(&dsn.parse().unwrap(), true).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig(_)), "{dsn}: {err:?}");
        }
    }
}
