//! A connection string read by libpq's rules, before tokio-postgres's parser gets what is left:
//!
//! - the options tokio-postgres does not parse are taken out (`sslmode=verify-ca|verify-full`,
//!   `sslrootcert`), and one it parses otherwise than libpq (`connect_timeout`: zero or below
//!   means no bound in libpq, the default bound in tokio-postgres);
//! - an option given twice counts once, the last one (tokio-postgres would add a second `host`,
//!   `hostaddr` or `port` to the list; in a URL, a `host` or `port` of the query string to those
//!   of the authority);
//! - a value with no option name before its `=` is an error (tokio-postgres would stop there,
//!   silently dropping the rest of the string).
//!
//! [`check_ranges`]: the settings no socket would take (`keepalives_idle` of a year, port 0),
//! refused up front, the option named, rather than as an I/O error at the first connect.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::error::Error;
use crate::ssl::SslMode;

/// What was taken out of a connection string.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) ssl_mode: Option<SslMode>,
    pub(crate) root_cert: Option<String>,
    /// `connect_timeout`: `Duration::MAX` for zero or below (no bound, as libpq).
    pub(crate) connect_timeout: Option<Duration>,
}

/// Splits `dsn` into the options kept here and the connection string for tokio-postgres, by
/// libpq's rules; [`Error::InvalidConfig`] names an option whose value is not libpq's, or a
/// value without an option. What tokio-postgres will refuse anyway is left to it.
pub(crate) fn take(dsn: &str) -> Result<(Taken, String), Error> {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        take_url(trimmed)
    } else {
        take_pairs(dsn)
    }
}

fn invalid(why: String) -> Error {
    Error::InvalidConfig(why)
}

fn mode(value: &str) -> Result<SslMode, Error> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        // `allow` (plaintext first, TLS if refused) is not offered: tokio-postgres cannot retry.
        other => return Err(invalid(format!("unsupported sslmode={other}"))),
    })
}

/// libpq's `connect_timeout`: a decimal `int` (blanks around it allowed); zero or below, no
/// bound. libpq's rounding of 1 up to 2 is not followed: it makes up for libpq's whole-second
/// clock, which this crate does not have.
fn connect_timeout(value: &str) -> Result<Duration, Error> {
    let secs: i32 = value.trim().parse().map_err(|_| {
        invalid(format!(
            "invalid integer value \"{value}\" for connection option \"connect_timeout\""
        ))
    })?;
    Ok(match u64::try_from(secs) {
        Ok(secs) if secs > 0 => Duration::from_secs(secs),
        _ => Duration::MAX,
    })
}

/// Takes `key` if it is one of the options kept here; only the last of a repeated option is
/// given, so only its value is judged (as libpq, which judges values after reading them all).
fn keep(taken: &mut Taken, key: &str, value: &str) -> Result<bool, Error> {
    match key {
        "sslmode" => taken.ssl_mode = Some(mode(value)?),
        "sslrootcert" => taken.root_cert = Some(value.to_owned()),
        "connect_timeout" => taken.connect_timeout = Some(connect_timeout(value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Which of `keys` are the last of their name (libpq keeps the last of a repeated option).
fn last_of_each<'k>(keys: impl DoubleEndedIterator<Item = &'k str>) -> Vec<bool> {
    let mut seen = HashSet::new();
    let mut last: Vec<bool> = keys.rev().map(|key| seen.insert(key)).collect();
    last.reverse();
    last
}

/// One `key = value` of a connection string: the value unquoted and unescaped, and the text it
/// was read from.
struct Pair<'a> {
    key: String,
    value: String,
    raw: &'a str,
}

/// `key = value` pairs, values bare or single-quoted with backslash escapes (libpq's syntax).
fn take_pairs(dsn: &str) -> Result<(Taken, String), Error> {
    let mut pairs = Vec::new();
    // What cannot be read as pairs (a key without `=`, an unterminated quote): left for
    // tokio-postgres to reject, with its own error.
    let mut tail = "";
    let mut chars = dsn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            tail = &dsn[start..];
            break;
        }
        if key.is_empty() {
            // libpq: `invalid connection option ""`; tokio-postgres would stop reading here.
            return Err(invalid(format!(
                "invalid connection option \"\": a value with no option name before its \"=\" \
                 at byte {start}"
            )));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    c => value.push(c),
                }
            }
            if !closed {
                tail = &dsn[start..];
                break;
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next().map(|(_, c)| c));
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.peek().map_or(dsn.len(), |&(i, _)| i);
        pairs.push(Pair {
            key,
            value,
            raw: &dsn[start..end],
        });
    }
    let mut taken = Taken::default();
    let mut rest = String::new();
    let last = last_of_each(pairs.iter().map(|p| p.key.as_str()));
    for (pair, last) in pairs.iter().zip(last) {
        if last && !keep(&mut taken, &pair.key, &pair.value)? {
            rest.push_str(pair.raw);
            rest.push(' ');
        }
    }
    rest.push_str(tail);
    Ok((taken, rest))
}

/// A URL: the options are in the query string, percent-encoded. It is cut where tokio-postgres
/// cuts it: the credentials up to the first `@`, the hosts up to `/` or `?`, the database up to
/// `?`; each parameter a key up to `=` and a value up to `&`.
fn take_url(dsn: &str) -> Result<(Taken, String), Error> {
    let (scheme, after) = dsn.split_at(dsn.find("://").map_or(0, |i| i + 3));
    let (creds, after) = after.split_at(after.find('@').map_or(0, |i| i + 1));
    let (authority, after) = after.split_at(after.find(['/', '?']).unwrap_or(after.len()));
    let Some((path, query)) = after.split_once('?') else {
        return Ok((Taken::default(), dsn.to_owned()));
    };
    let mut params = Vec::new();
    let mut tail = "";
    let mut s = query;
    while !s.is_empty() {
        let Some((key, after)) = s.split_once('=') else {
            tail = s;
            break;
        };
        let (value, next) = after.split_once('&').unwrap_or((after, ""));
        params.push(Pair {
            key: decode(key),
            value: decode(value),
            raw: &s[..key.len() + 1 + value.len()],
        });
        s = next;
    }
    let mut taken = Taken::default();
    let mut kept = Vec::new();
    let (mut hosts, mut ports) = (None, None);
    let last = last_of_each(params.iter().map(|p| p.key.as_str()));
    for (param, last) in params.iter().zip(last) {
        if !last || keep(&mut taken, &param.key, &param.value)? {
            continue;
        }
        match param.key.as_str() {
            "host" => hosts = Some(&param.value),
            "port" => ports = Some(param.raw),
            _ => kept.push(param.raw.to_owned()),
        }
    }
    let mut authority = authority.to_owned();
    if hosts.is_some() || ports.is_some() {
        // libpq: the query's `host` or `port` replaces the authority's. tokio-postgres would add
        // them to its lists (and take a query `host=a,b` as one name): the authority's hosts and
        // ports move into the query, and the query's win.
        let Some(chunks) = authority_chunks(&authority) else {
            // Malformed: tokio-postgres refuses it.
            return Ok((taken, rebuild(scheme, creds, &authority, path, kept, tail)));
        };
        let mut front = Vec::new();
        match hosts {
            Some(hosts) => front.extend(hosts.split(',').map(|h| format!("host={}", encode(h)))),
            None => front.extend(chunks.iter().map(|(h, _)| format!("host={h}"))),
        }
        match ports {
            Some(ports) => front.push(ports.to_owned()),
            // Ports given for none of the authority's hosts: unset, as in libpq.
            None if chunks.iter().all(|(_, p)| p.is_none()) => {}
            None => {
                let list: Vec<&str> = chunks.iter().map(|(_, p)| p.unwrap_or("")).collect();
                front.push(format!("port={}", list.join(",")));
            }
        }
        front.append(&mut kept);
        kept = front;
        authority.clear();
    }
    Ok((taken, rebuild(scheme, creds, &authority, path, kept, tail)))
}

/// The hosts of a URL's authority and their ports (raw), as tokio-postgres splits them; `None`
/// if it would refuse them.
fn authority_chunks(authority: &str) -> Option<Vec<(&str, Option<&str>)>> {
    if authority.is_empty() {
        return Some(Vec::new());
    }
    authority
        .split(',')
        .map(|chunk| match chunk.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']')?;
                match after {
                    "" => Some((host, None)),
                    _ => Some((host, Some(after.strip_prefix(':')?))),
                }
            }
            None => Some(match chunk.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (chunk, None),
            }),
        })
        .collect()
}

fn rebuild(
    scheme: &str,
    creds: &str,
    authority: &str,
    path: &str,
    params: Vec<String>,
    tail: &str,
) -> String {
    let mut query = params.join("&");
    if !tail.is_empty() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(tail);
    }
    let mut url = format!("{scheme}{creds}{authority}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    url
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes all but letters, digits and `-._~/:` (what tokio-postgres decodes back).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The largest keepalive idle time and interval, in seconds, and probe count a socket takes
/// (Linux's `MAX_TCP_KEEPIDLE`, `MAX_TCP_KEEPINTVL`, `MAX_TCP_KEEPCNT`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const KEEPALIVE_LIMITS: (u64, u32) = (32767, 127);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const KEEPALIVE_LIMITS: (u64, u32) = (i32::MAX as u64, i32::MAX as u32);

/// Refuses, naming the option, the settings of `config` that no socket would take: a port of
/// 0, TCP keepalive times and counts outside what the kernel accepts, a TCP user timeout beyond
/// its `int` of milliseconds. (libpq fails on them too, at its first connect; these are checked
/// when the configuration is read and before each open.) Keepalives are checked only when on
/// and a host is reached over TCP: libpq ignores them for Unix-domain sockets.
pub(crate) fn check_ranges(config: &tokio_postgres::Config) -> Result<(), Error> {
    fn out_of_range(key: &str, value: &dyn std::fmt::Display, range: &str) -> Error {
        invalid(format!("{key}={value} is out of range ({range})"))
    }
    fn secs(d: Duration) -> String {
        match d.subsec_nanos() {
            0 => d.as_secs().to_string(),
            _ => format!("{d:?}"),
        }
    }
    if config.get_ports().contains(&0) {
        return Err(out_of_range("port", &0, "1 to 65535"));
    }
    let tcp = !config.get_hostaddrs().is_empty()
        || config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
    if !tcp {
        return Ok(());
    }
    let (max_secs, max_count) = KEEPALIVE_LIMITS;
    let range = format!("1 to {max_secs} seconds");
    let times = [
        ("keepalives_idle", Some(config.get_keepalives_idle())),
        ("keepalives_interval", config.get_keepalives_interval()),
    ];
    for (key, time) in times {
        match time {
            Some(t) if config.get_keepalives() && !(1..=max_secs).contains(&t.as_secs()) => {
                return Err(out_of_range(key, &secs(t), &range));
            }
            _ => {}
        }
    }
    match config.get_keepalives_retries() {
        Some(n) if config.get_keepalives() && !(1..=max_count).contains(&n) => {
            return Err(out_of_range(
                "keepalives_retries",
                &n,
                &format!("1 to {max_count}"),
            ));
        }
        _ => {}
    }
    match config.get_tcp_user_timeout() {
        Some(t) if t.as_millis() > i32::MAX as u128 => Err(out_of_range(
            "tcp_user_timeout",
            &secs(*t),
            &format!("at most {} seconds", i32::MAX / 1000),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_lose_only_the_options_kept_here() {
        let (taken, rest) = take(
            "host=db sslmode = verify-full sslrootcert='/a b/c\\'s.crt' user=u password='p w'",
        )
        .unwrap();
        assert_eq!(taken.ssl_mode, Some(SslMode::VerifyFull));
        assert_eq!(taken.root_cert.as_deref(), Some("/a b/c's.crt"));
        assert_eq!(rest.trim(), "host=db user=u password='p w'");
        let (taken, rest) = take("host=db").unwrap();
        assert_eq!(taken, Taken::default());
        assert_eq!(rest.trim(), "host=db");
        assert!(take("host=db sslmode=allow").is_err());
        assert!(take("host=db sslmode=bogus").is_err());
    }

    #[test]
    fn urls_lose_only_the_options_kept_here() {
        let (taken, rest) =
            take("postgresql://u@db/x?sslmode=verify-ca&application_name=a&sslrootcert=%2Fr.crt")
                .unwrap();
        assert_eq!(taken.ssl_mode, Some(SslMode::VerifyCa));
        assert_eq!(taken.root_cert.as_deref(), Some("/r.crt"));
        assert_eq!(rest, "postgresql://u@db/x?application_name=a");
        let (_, rest) = take("postgres://db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://db");
    }

    #[test]
    fn the_last_of_a_repeated_option_counts() {
        let (taken, rest) =
            take("port=1 host=a user=x port=2 host=b sslmode=bogus sslmode=disable").unwrap();
        assert_eq!(rest.trim(), "user=x port=2 host=b");
        assert_eq!(taken.ssl_mode, Some(SslMode::Disable));
        let (_, rest) = take("postgresql://a:1/db?port=2&user=x&user=y").unwrap();
        assert_eq!(rest, "postgresql:///db?host=a&port=2&user=y");
        let (_, rest) = take("postgresql://u@a:1,[::1]:3/db?host=b,c").unwrap();
        assert_eq!(rest, "postgresql://u@/db?host=b&host=c&port=1,3");
        let (_, rest) = take("postgresql://a,b:5/db?host=%2Frun").unwrap();
        assert_eq!(rest, "postgresql:///db?host=/run&port=,5");
        let (_, rest) = take("postgresql://a/db?host=b").unwrap();
        assert_eq!(rest, "postgresql:///db?host=b");
    }

    #[test]
    fn a_value_without_a_key_is_an_error() {
        for dsn in ["host=a =x user=nobody", "=", "host=a = x"] {
            match take(dsn) {
                Err(Error::InvalidConfig(why)) => assert!(why.contains("option"), "{why}"),
                other => panic!("{dsn}: {other:?}"),
            }
        }
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        let timeout = |dsn: &str| take(dsn).map(|(t, _)| t.connect_timeout);
        assert_eq!(
            timeout("connect_timeout=7").unwrap(),
            Some(Duration::from_secs(7))
        );
        for none in [
            "connect_timeout=0",
            "connect_timeout=-5",
            "connect_timeout=' 0 '",
        ] {
            assert_eq!(timeout(none).unwrap(), Some(Duration::MAX), "{none}");
        }
        for bad in [
            "connect_timeout=x",
            "connect_timeout=99999999999",
            "connect_timeout=1.5",
        ] {
            match timeout(bad) {
                Err(Error::InvalidConfig(why)) => assert!(why.contains("connect_timeout"), "{why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(
            timeout("connect_timeout=x connect_timeout=3").unwrap(),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn settings_no_socket_takes_are_refused_by_name() {
        for (dsn, key) in [
            ("host=h keepalives_idle=99999999", "keepalives_idle"),
            ("host=h keepalives_interval=40000", "keepalives_interval"),
            ("host=h keepalives_retries=1000", "keepalives_retries"),
            ("host=h keepalives_retries=0", "keepalives_retries"),
            ("host=h tcp_user_timeout=9999999999", "tcp_user_timeout"),
            ("host=h port=0", "port"),
        ] {
            let config: tokio_postgres::Config = dsn.parse().unwrap();
            match check_ranges(&config) {
                Err(Error::InvalidConfig(why)) => assert!(why.starts_with(key), "{why}"),
                other => panic!("{dsn}: {other:?}"),
            }
        }
        for fine in [
            "host=h keepalives_idle=30 keepalives_interval=5 keepalives_retries=3",
            "host=h keepalives=0 keepalives_idle=99999999",
            "host=/run/pg keepalives_idle=99999999",
        ] {
            check_ranges(&fine.parse().unwrap()).unwrap();
        }
    }
}
