//! The libpq options tokio-postgres does not parse (`sslmode=verify-ca|verify-full`,
//! `sslrootcert`), taken out of a connection string before the rest goes to its parser.

use crate::ssl::SslMode;

/// What was taken out of a connection string.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) ssl_mode: Option<SslMode>,
    pub(crate) root_cert: Option<String>,
}

/// Splits `dsn` into the options kept here and the connection string for tokio-postgres; `Err`
/// names an option with a value that is not libpq's.
pub(crate) fn take(dsn: &str) -> Result<(Taken, String), String> {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        take_url(trimmed)
    } else {
        take_pairs(dsn)
    }
}

fn mode(value: &str) -> Result<SslMode, String> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        // `allow` (plaintext first, TLS if refused) is not offered: tokio-postgres cannot retry.
        other => return Err(format!("sslmode={other}")),
    })
}

fn keep(taken: &mut Taken, key: &str, value: &str) -> Result<bool, String> {
    match key {
        "sslmode" => taken.ssl_mode = Some(mode(value)?),
        "sslrootcert" => taken.root_cert = Some(value.to_owned()),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `key = value` pairs, values bare or single-quoted with backslash escapes (libpq's syntax).
fn take_pairs(dsn: &str) -> Result<(Taken, String), String> {
    let mut taken = Taken::default();
    let mut rest = String::new();
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
            // Not a pair: leave it for tokio-postgres to reject.
            rest.push_str(&dsn[start..]);
            break;
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\'')) | None => break,
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((_, c)) => value.push(c),
                }
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
        if !keep(&mut taken, &key, &value)? {
            rest.push_str(&dsn[start..end]);
            rest.push(' ');
        }
    }
    Ok((taken, rest))
}

/// A URL: the options are in the query string, percent-encoded.
fn take_url(dsn: &str) -> Result<(Taken, String), String> {
    let mut taken = Taken::default();
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok((taken, dsn.to_owned()));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !keep(&mut taken, &decode(key), &decode(value))? {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((taken, rest))
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
}
