//! Self-test of the throwaway-PostgreSQL harness: lifecycle, cleanup and error messages.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sanspool_tests::harness::{self, find_pg_bin, find_pg_bin_in, HarnessError, PgServer, DSN_ENV};

/// A server of our own, or `None` (with a note) when PostgreSQL is absent but an external server is set.
fn own_server() -> Option<PgServer> {
    match PgServer::start() {
        Ok(server) => Some(server),
        Err(e @ HarnessError::MissingBinary { .. }) if std::env::var_os(DSN_ENV).is_some() => {
            eprintln!("note: skipped, {DSN_ENV} is set and {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Runs `SELECT 1` through psql; `false` with a note when psql is absent.
fn psql_select_1(bin_dir: &Path, dsn: &str) -> bool {
    let Ok(psql) =
        find_pg_bin_in("psql", &[bin_dir.to_path_buf()]).or_else(|_| find_pg_bin("psql"))
    else {
        eprintln!("note: psql not found, skipping the SELECT 1 check");
        return false;
    };
    let out = Command::new(psql)
        .args(["-X", "-A", "-t", "-c", "SELECT 1", "-d", dsn])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "1");
    true
}

/// Pids of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// The harness directories of process `pid` that still exist.
fn dirs_of_process(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("sanspool-pg-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("read the temp dir")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect()
}

#[test]
fn lifecycle_stop_restart_and_cleanup() {
    let Some(mut server) = own_server() else {
        return;
    };
    let (port, dir) = (server.port(), server.data_dir().to_path_buf());
    let dir_name = dir.to_string_lossy().into_owned();
    assert!(server.is_running() && dir.is_dir());
    assert_eq!(
        server.dsn(),
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres")
    );
    assert!(accepts(port));
    psql_select_1(server.bin_dir(), &server.dsn());

    server.stop().unwrap();
    server.stop().unwrap(); // idempotent
    assert!(!server.is_running());
    assert!(!accepts(port), "the port still accepts after stop");

    server.start_again().unwrap();
    assert!(server.is_running() && accepts(port));
    psql_select_1(server.bin_dir(), &server.dsn());
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    psql_select_1(server.bin_dir(), &server.dsn());
    assert!(!processes_mentioning(&dir_name).is_empty());

    drop(server);
    assert!(!dir.exists(), "{} outlived its server", dir.display());
    assert!(!accepts(port), "the port still accepts after drop");
    assert_eq!(
        processes_mentioning(&dir_name),
        Vec::<u32>::new(),
        "processes outlived the server"
    );
}

#[test]
fn servers_in_parallel_get_their_own_dirs_and_ports() {
    let (Some(a), Some(b)) = (own_server(), own_server()) else {
        return;
    };
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    assert!(accepts(a.port()) && accepts(b.port()));
}

#[test]
fn missing_binary_error_names_it_and_the_remedy() {
    let dir = std::env::temp_dir().join(format!("sanspool-selftest-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dirs = [dir.join("nonexistent"), dir.clone()];
    let program = dir.join("initdb");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();

    let err = find_pg_bin_in("initdb", &dirs).expect_err("a non-executable file is no program");
    assert!(
        matches!(&err, HarnessError::MissingBinary { name, searched } if name == "initdb" && searched.len() == 2)
    );
    let message = err.to_string();
    for part in [
        "`initdb`",
        "apt-get install -y postgresql",
        "SANSPOOL_TEST_DSN",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }

    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(find_pg_bin_in("initdb", &dirs).unwrap(), program);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shared_dsn_is_one_server() {
    let dsn = harness::shared_dsn();
    assert_eq!(harness::shared_dsn(), dsn);
    if std::env::var_os(DSN_ENV).is_none() {
        let pg_ctl = find_pg_bin("pg_ctl").unwrap().canonicalize().unwrap();
        psql_select_1(pg_ctl.parent().unwrap(), &dsn);
    }
}

const CHILD_ENV: &str = "SANSPOOL_SELFTEST_CHILD";

/// Run by the tests below in a child process: starts the shared server, prints its DSN, then exits or
/// waits to be killed.
#[test]
#[ignore = "run as a child process by shared_server_is_gone_after_*"]
fn shared_server_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    println!("DSN={}", harness::shared_dsn());
    if mode == "wait" {
        std::thread::sleep(Duration::from_secs(300));
    }
}

/// Runs [`shared_server_child`] in a child process, ends it (by exiting, or by SIGKILL when `kill`), and
/// checks that neither its server directory nor any process of its server outlives it.
fn check_shared_server_cleanup(kill: bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shared_server_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, if kill { "wait" } else { "exit" })
        .env_remove(DSN_ENV)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let dsn = lines
        .find_map(|line| line.split_once("DSN=").map(|(_, dsn)| dsn.to_owned()))
        .expect("the child printed no DSN");
    let port: u16 = dsn
        .split_once("port=")
        .unwrap()
        .1
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    if kill {
        assert!(accepts(port) && !dirs_of_process(pid).is_empty());
        child.kill().unwrap();
    }
    lines.for_each(drop); // read to the end: a closed pipe would fail the child's last prints
    let status = child.wait().unwrap();
    assert!(kill || status.success(), "the child failed: {status}");
    let needle = format!("sanspool-pg-{pid}-");
    // After a normal exit the cleanup is done already; after SIGKILL the watchdog needs a moment.
    let deadline = Instant::now() + Duration::from_secs(if kill { 30 } else { 0 });
    loop {
        let (dirs, procs) = (dirs_of_process(pid), processes_mentioning(&needle));
        if dirs.is_empty() && procs.is_empty() && !accepts(port) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: dirs {dirs:?}, processes {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn shared_server_is_gone_after_exit() {
    if find_pg_bin("initdb").is_ok() {
        check_shared_server_cleanup(false);
    }
}

#[test]
fn shared_server_is_gone_after_sigkill() {
    if find_pg_bin("initdb").is_ok() {
        check_shared_server_cleanup(true);
    }
}
