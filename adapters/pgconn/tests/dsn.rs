//! Connection strings, generated: odd and malformed ones never panic and fail only with a typed
//! configuration error; well-formed ones with repeated options read as libpq reads them (the
//! last of each counts).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use sanspool_pgconn::{Error, Opener, Plan, Step};

/// Option names: libpq's and tokio-postgres's, some misspelled, empty, or odd.
const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "keepalives_count",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "nosuchoption",
    "",
    "hôst",
    "host ",
    "'host'",
];

/// Values, ordinary and not. (No `verify-ca`/`verify-full` without a root file and no
/// `sslrootcert=system`: each loads the system's root store, milliseconds a case; the pair below
/// covers the verifying modes.)
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "5",
    "5432",
    "65535",
    "65536",
    "32767",
    "32768",
    "127",
    "128",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "99999999999999999999999",
    "1.5",
    " 7 ",
    "'  3 '",
    "abc",
    "localhost",
    "127.0.0.1",
    "::1",
    "[::1]",
    "/tmp",
    "a,b",
    "a,,b",
    ",",
    "h1,/tmp,10.0.0.1",
    "10.0.0.1,10.0.0.2",
    "999.1.1.1",
    "disable",
    "prefer",
    "require",
    "allow",
    "direct",
    "postgres",
    "read-write",
    "read-only",
    "any",
    "random",
    "'quoted value'",
    "'unterminated",
    "'a\\'b'",
    "\\",
    "a\\ b",
    "=",
    "==",
    "x=y",
    "%2F",
    "%zz",
    "%",
    "é",
    "'",
    "''",
];

/// Whole fragments: the verifying modes with a root file that does not exist, URL pieces,
/// separators glued wrongly.
const FRAGMENTS: &[&str] = &[
    "sslmode=verify-full sslrootcert=/nonexistent.crt",
    "sslmode=verify-ca sslrootcert=/nonexistent.crt",
    "=x",
    " = ",
    "=",
    "host",
    "'",
    "\\",
    "\t",
    "\n",
    "postgres://",
    "?",
    "&",
    "@",
    "#",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(list)
}

/// A `key=value` string: pairs, blanks, fragments, in any order.
fn pairs() -> impl Strategy<Value = String> {
    let pair = (
        pick(KEYS),
        pick(&[" ", "=", "= ", " = ", "=="]),
        pick(VALUES),
    )
        .prop_map(|(k, eq, v)| format!("{k}{eq}{v}"));
    let piece = prop_oneof![6 => pair, 1 => pick(FRAGMENTS).prop_map(str::to_owned)];
    let sep = pick(&[" ", "  ", "\t", "\n", ""]);
    proptest::collection::vec((piece, sep), 0..8)
        .prop_map(|parts| parts.into_iter().map(|(p, s)| p + s).collect())
}

/// A URL: scheme, credentials, hosts and ports, database, query, each odd at times.
fn url() -> impl Strategy<Value = String> {
    let scheme = pick(&["postgres://", "postgresql://", " postgresql://"]);
    let creds = pick(&["", "u@", "u:p@", "@", "u%40x:p%3A@", "a@b@"]);
    let host = pick(&[
        "h",
        "h:5432",
        "h:",
        ":5",
        "[::1]:5433",
        "[::1]",
        "[::1",
        "[::1]x",
        "%2Ftmp",
        "",
        "h:x",
        "h:0",
        "h:99999",
    ]);
    let hosts = proptest::collection::vec(host, 0..4).prop_map(|h| h.join(","));
    let path = pick(&["", "/", "/db", "/d%20b", "/db/x"]);
    let param = (pick(KEYS), pick(VALUES)).prop_map(|(k, v)| {
        let enc = |s: &str| {
            s.replace(' ', "%20")
                .replace('&', "%26")
                .replace('=', "%3D")
        };
        format!("{}={}", enc(k), enc(v))
    });
    let param = prop_oneof![8 => param, 1 => pick(&["", "x", "=", "&", "a=b=c", "%"]).prop_map(str::to_owned)];
    let query = proptest::option::of(proptest::collection::vec(param, 0..6));
    (scheme, creds, hosts, path, query).prop_map(|(s, c, h, p, q)| {
        let mut url = format!("{s}{c}{h}{p}");
        if let Some(q) = q {
            url.push('?');
            url.push_str(&q.join("&"));
        }
        url
    })
}

/// A connection string, well- or ill-formed, or any text at all.
fn dsn() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => pairs(),
        3 => url(),
        1 => "[ =',\\\\a-z0-9%@/?&:\\[\\]\\t\\n]{0,60}",
        1 => any::<String>(),
    ]
}

/// The plan of `opener`, played to its end with every lookup and connect failing (no I/O).
fn play(mut plan: Plan) {
    for _ in 0..64 {
        match plan.step() {
            Step::Resolve(_) => plan.resolved(Err(Error::Closed)),
            Step::Connect(target) => plan.failed(sanspool_pgconn::Failure::after_connect(
                target,
                Error::Closed,
            )),
            Step::Failed(_) => return,
        }
    }
    panic!("the plan never ends");
}

fn typed(e: &Error) -> bool {
    matches!(e, Error::Config(_) | Error::InvalidConfig(_))
}

proptest! {
    #![proptest_config(Config { cases: 50_000, failure_persistence: None, ..Config::default() })]

    /// Whatever the string, reading it (and planning its opens) fails only with a typed
    /// configuration error, never a panic.
    #[test]
    fn odd_connection_strings_fail_typed(dsn in dsn()) {
        match Opener::new(&dsn) {
            Ok(opener) => {
                let _ = opener.connect_bound(std::time::Duration::from_secs(1));
                match opener.plan() {
                    Ok(plan) => play(plan),
                    Err(e) => prop_assert!(typed(&e), "{dsn:?}: plan: {e:?}"),
                }
            }
            Err(e) => prop_assert!(typed(&e), "{dsn:?}: {e:?}"),
        }
    }
}

/// A valid value for each option of the repeated-option property.
fn valid(key: &'static str) -> BoxedStrategy<String> {
    match key {
        "host" => pick(&["a", "b.example", "10.0.0.1", "/tmp"])
            .prop_map(str::to_owned)
            .boxed(),
        "port" => (1u16..).prop_map(|p| p.to_string()).boxed(),
        "connect_timeout" => (-5i32..100).prop_map(|t| t.to_string()).boxed(),
        "keepalives_idle" => (1u32..1000).prop_map(|t| t.to_string()).boxed(),
        "sslmode" => pick(&["disable", "prefer", "require"])
            .prop_map(str::to_owned)
            .boxed(),
        _ => "[a-z]{1,6}".boxed(),
    }
}

const REPEATED: &[&str] = &[
    "host",
    "port",
    "user",
    "dbname",
    "application_name",
    "connect_timeout",
    "keepalives_idle",
    "sslmode",
];

fn options() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let option = pick(REPEATED).prop_flat_map(|key| (Just(key), valid(key)));
    proptest::collection::vec(option, 1..12)
}

proptest! {
    #![proptest_config(Config { cases: 2_000, failure_persistence: None, ..Config::default() })]

    /// Options given more than once, in a `key=value` string or a URL's query string: read as
    /// the string with only the last of each.
    #[test]
    fn the_last_of_a_repeated_option_counts(options in options(), url in any::<bool>()) {
        let mut last = BTreeMap::new();
        for (key, value) in &options {
            last.insert(*key, value.clone());
        }
        let once: Vec<String> = last.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let all: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let (given, expected) = if url {
            let q = |params: &[String]| params.join("&").replace('/', "%2F");
            (format!("postgresql://?{}", q(&all)), format!("postgresql://?{}", q(&once)))
        } else {
            (all.join(" "), once.join(" "))
        };
        let given = Opener::new(&given).expect("valid options");
        let expected = Opener::new(&expected).expect("valid options");
        prop_assert_eq!(given.config(), expected.config());
        prop_assert_eq!(given.ssl_mode(), expected.ssl_mode());
    }
}

#[test]
fn the_cases_named_in_the_issue() {
    // A bare `=`: an error naming it, not the rest of the string dropped.
    match Opener::new("host=h =x user=nobody") {
        Err(Error::InvalidConfig(why)) => assert!(why.contains("option"), "{why}"),
        other => panic!("{other:?}"),
    }
    // `port` twice: the last.
    let opener = Opener::new("host=h port=1 port=2").unwrap();
    assert_eq!(opener.config().get_ports(), [2]);
    // `connect_timeout` of zero or below: no bound.
    for dsn in ["host=h connect_timeout=0", "host=h connect_timeout=-3"] {
        let bound = Opener::new(dsn)
            .unwrap()
            .connect_bound(std::time::Duration::from_secs(1));
        assert_eq!(bound, std::time::Duration::MAX, "{dsn}");
    }
    let opener = Opener::new("host=h").unwrap();
    assert_eq!(
        opener.connect_bound(std::time::Duration::from_secs(1)),
        std::time::Duration::from_secs(1)
    );
    // Out of the kernel's range: refused by name, not "cannot reach the server".
    match Opener::new("host=h keepalives_idle=99999999") {
        Err(Error::InvalidConfig(why)) => assert!(why.starts_with("keepalives_idle="), "{why}"),
        other => panic!("{other:?}"),
    }
    // From a configuration, the same at planning.
    let mut config = sanspool_pgconn::tokio_postgres::Config::new();
    config
        .host("h")
        .keepalives_idle(std::time::Duration::from_secs(99_999_999));
    match Opener::from_config(config).plan() {
        Err(Error::InvalidConfig(why)) => assert!(why.starts_with("keepalives_idle="), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut config = sanspool_pgconn::tokio_postgres::Config::new();
    config.host("h").connect_timeout(std::time::Duration::ZERO);
    let bound = Opener::from_config(config).connect_bound(std::time::Duration::from_secs(1));
    assert_eq!(bound, std::time::Duration::MAX);
}
