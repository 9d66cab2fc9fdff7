// A custom runtime embedding sanspool-core: the pool, compiled to wasm32-unknown-unknown, is loaded
// with plain WebAssembly.instantiate (no WASI, no imports) and driven by this script, which plays
// the world around it: a clock, a database server that goes down and comes back, connections
// opened, reset, checked and closed with some latency, and borrowers through a scripted day.
//
//   node examples/wasm/host.mjs <sanspool_wasm_example.wasm>
//
// The driver loop is the core's: feed one input, drain every command (start its I/O, or deliver a
// grant or failure to the checkout it names), and run until the next I/O completion or
// poll_timeout, whichever comes first. Each expected outcome is asserted: any mismatch throws and
// the script exits non-zero. The exported API is described in README.md.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import process from "node:process";

const file = process.argv[2];
if (!file) {
  console.error("usage: node examples/wasm/host.mjs <sanspool_wasm_example.wasm>");
  process.exit(2);
}
const { instance } = await WebAssembly.instantiate(await readFile(file), {});
const pool = instance.exports;

// The glue's error codes (results are their negations; FAIL commands carry them in out_flag).
const ERRORS = [
  "ok", "Closed", "Exhausted", "Unkeyed", "Foreign", "AlreadyReturned", "WrongKey", "KeyBusy",
  "TooManyWaiters", "UnknownTicket", "UnknownWaiter", "Timeout", "OpenFailed", "MinAboveMax",
  "MaxZero", "CapacityExceeded", "InvalidTiming",
];
const error = (code) => ERRORS[-code] ?? `code ${code}`;
const [CLEAN, DIRTY, BROKEN] = [0, 1, 2];
// How a RESET, CHECK or CLOSE ended (report_reset, report_checked, report_closed).
const [FAILED, OK, ABANDONED] = [0, 1, 2];
const NO_WAIT = -1;

// ------------------------------------------------------------------------------ the world

const S = 1000, M = 60 * S, H = 60 * M;
const LATENCY = { open: 20, reset: 5, check: 3, close: 2 }; // ms
const BOUND = 5 * 1000; // ms: the host gives up on a reset, check or close that takes longer
let now = 0;
let serverUp = true;
let checksPass = true;
let checksHang = false; // the server stopped answering: a check hangs until its bound
let nextConn = 1;
const inflight = []; // I/O started by the host: { at, op, ticket, conn }
const outcomes = new Map(); // waiter id -> { conn, lease } or { error }
const names = new Map(); // waiter id -> borrower

const clock = (t) => new Date(t).toISOString().slice(11, 23);
const log = (msg) => console.log(`${clock(now)}  ${msg}`);

/// Drains every command: starts the I/O of OPEN, CLOSE, RESET and CHECK; delivers GRANT and FAIL.
function drain() {
  for (let kind; (kind = pool.next_output()) !== 0; ) {
    const handle = pool.out_handle();
    const conn = pool.out_conn();
    switch (kind) {
      case 1:
        log("  core: OPEN a connection");
        inflight.push({ at: now + LATENCY.open, op: "open", ticket: handle });
        break;
      case 2:
        log(`  core: CLOSE #${conn}`);
        inflight.push({ at: now + LATENCY.close, op: "close", ticket: handle, conn });
        break;
      case 3:
        log(`  core: RESET #${conn} (ROLLBACK)`);
        inflight.push({ at: now + LATENCY.reset, op: "reset", ticket: handle, conn });
        break;
      case 4:
        log(`  core: CHECK #${conn} (SELECT 1)`);
        if (checksHang) {
          inflight.push({ at: now + BOUND, op: "check", ticket: handle, conn, abandoned: true });
        } else {
          inflight.push({ at: now + LATENCY.check, op: "check", ticket: handle, conn });
        }
        break;
      case 5: {
        const waiter = pool.out_waiter();
        outcomes.set(waiter, { conn, lease: handle });
        log(`  core: GRANT #${conn} to ${names.get(waiter)}`);
        break;
      }
      case 6: {
        const waiter = pool.out_waiter();
        const why = ERRORS[pool.out_flag()];
        outcomes.set(waiter, { error: why });
        log(`  core: FAIL ${names.get(waiter)}: ${why}`);
        break;
      }
      case 7: {
        // A connection came back while this checkout waits: it claims it (here at once; a host
        // with real tasks wakes the task, which claims when it runs).
        const waiter = pool.out_waiter();
        log(`  core: WAKE ${names.get(waiter)}`);
        if (pool.claim(now, waiter) === 1) {
          outcomes.set(waiter, { conn: pool.out_conn(), lease: pool.out_handle() });
          log(`  ${names.get(waiter)} claims #${pool.out_conn()}`);
        }
        break;
      }
      case 8:
        log(`  core: LEAK? slot ${pool.out_flag()} held past leak_after`);
        break;
      default:
        assert.fail(`unknown command ${kind}`);
    }
  }
}

/// The I/O `io` finishes now: report its outcome.
function complete(io) {
  let r;
  switch (io.op) {
    case "open":
      if (serverUp) {
        const conn = nextConn++;
        log(`host: #${conn} connected`);
        r = pool.report_opened(now, io.ticket, conn);
      } else {
        log("host: connect refused (server down)");
        r = pool.report_open_failed(now, io.ticket, 0); // transient: the server may come back
      }
      break;
    case "reset":
      log(`host: #${io.conn} reset`);
      r = pool.report_reset(now, io.ticket, io.conn, OK);
      break;
    case "check":
      if (io.abandoned) {
        log(`host: #${io.conn} check still hanging at its bound: cut off, socket torn down`);
        r = pool.report_checked(now, io.ticket, io.conn, ABANDONED);
      } else {
        log(`host: #${io.conn} check ${checksPass ? "ok" : "failed (server dropped it)"}`);
        r = pool.report_checked(now, io.ticket, io.conn, checksPass ? OK : FAILED);
      }
      break;
    case "close":
      log(`host: #${io.conn} closed`);
      r = pool.report_closed(now, io.ticket, OK);
      break;
  }
  assert.equal(r, 0, `the core refused the ${io.op} completion: ${error(r)}`);
}

/// Runs the world until `t`: every I/O completion and every deadline before it, in time order.
function runUntil(t) {
  for (let steps = 0; ; steps++) {
    assert.ok(steps < 10_000, "the driver loop does not settle");
    inflight.sort((a, b) => a.at - b.at);
    const io = inflight.length ? inflight[0].at : Infinity;
    const due = pool.poll_timeout();
    const timer = due < 0 ? Infinity : due;
    if (Math.min(io, timer) > t) break;
    if (io <= timer) {
      now = Math.max(now, io);
      complete(inflight.shift());
    } else {
      now = Math.max(now, timer);
      log("host: poll_timeout reached: handle_timeout");
      pool.handle_timeout(now);
    }
    drain();
  }
  now = Math.max(now, t);
}

/// At time `t` (after everything due before it), `action`, then drain its commands.
function at(t, action) {
  runUntil(t);
  const out = action();
  drain();
  return out;
}

// ------------------------------------------------------------------------------ user actions

/// A checkout: { ready, conn, lease } | { held, lease } | { waiting, waiter } | { error }.
function checkout(who, key, waitMs) {
  const r = pool.checkout(now, key, waitMs);
  const how = waitMs < 0 ? "no wait" : waitMs === Infinity ? "wait forever" : `wait ${waitMs} ms`;
  const what = `${who} checkout(key ${key || "none"}, ${how})`;
  switch (r) {
    case 1:
      log(`${what}: #${pool.out_conn()} ready`);
      return { ready: true, conn: pool.out_conn(), lease: pool.out_handle() };
    case 2:
      log(`${what}: held, same connection`);
      return { held: true, lease: pool.out_handle() };
    case 3: {
      const waiter = pool.out_waiter();
      names.set(waiter, who);
      log(`${what}: queued`);
      return { waiting: true, waiter };
    }
    default:
      log(`${what}: ${error(r)}`);
      return { error: error(r) };
  }
}

function checkin(who, lease, conn, state) {
  const r = pool.checkin(now, lease, 0, conn, state);
  const how = ["clean", "dirty", "broken", "close"][state];
  log(`${who} checkin #${conn} (${how})${r === 0 ? "" : `: ${error(r)}`}`);
  return r === 0 ? "ok" : error(r);
}

const stats = () => ({
  size: pool.stats_size(), idle: pool.stats_idle(), in_use: pool.stats_in_use(),
  waiting: pool.stats_waiting(), opening: pool.stats_opening(),
  resetting: pool.stats_resetting(), closing: pool.stats_closing(),
  checkouts: pool.stats_checkouts(), waits: pool.stats_waits(),
  wait_time_ms: pool.stats_wait_time_ms(), timeouts: pool.stats_timeouts(),
  opens: pool.stats_opens(), open_failures: pool.stats_open_failures(),
  closes: pool.stats_closes(), broken_returns: pool.stats_broken_returns(),
  resets: pool.stats_resets(), expired: pool.stats_expired(),
  abandoned_resets: pool.stats_abandoned_resets(), abandoned_checks: pool.stats_abandoned_checks(),
  abandoned_closes: pool.stats_abandoned_closes(),
});
/// Asserts the stats listed in `want`.
function expectStats(want) {
  const got = stats();
  for (const [k, v] of Object.entries(want)) assert.equal(got[k], v, `stats.${k} at ${clock(now)}`);
}

// ------------------------------------------------------------------------------ the day

// 08:00 the pool starts: 1..3 connections, idle ones beyond `min` closed after 10 minutes.
now = 8 * H;
log("host: pool_new(min 1, max 3, max_idle 10 min)");
assert.equal(pool.pool_new(1, 3, 10 * M, 0), 0);
assert.equal(pool.is_warm(), 0);
drain();
runUntil(8 * H + S);
assert.equal(pool.is_warm(), 1, "warm once the min connection is open");
expectStats({ size: 1, idle: 1, opens: 1 });

// psycopg2's getconn(key): the idle connection; the same key gets the same connection again.
const alice = at(8 * H + S, () => checkout("alice", 7, NO_WAIT));
assert.deepEqual([alice.ready, alice.conn], [true, 1]);
const again = at(8 * H + S, () => checkout("alice", 7, NO_WAIT));
assert.deepEqual([again.held, again.lease], [true, alice.lease]);

// Nothing idle: bob queues for up to 5 s, the core orders an open, the new connection is his.
const bob = at(8 * H + 2 * S, () => checkout("bob", 0, 5 * S));
assert.ok(bob.waiting);
runUntil(8 * H + 3 * S);
const bobs = outcomes.get(bob.waiter);
assert.equal(bobs.conn, 2, "a connection opened for bob");
expectStats({ size: 2, in_use: 2, waits: 1, wait_time_ms: LATENCY.open });

// alice returns hers inside a transaction: reset before reuse. A second checkin is refused and
// the connection handed back (the core checks the lease's generation).
assert.equal(at(8 * H + 3 * S, () => checkin("alice", alice.lease, 1, DIRTY)), "ok");
assert.equal(at(8 * H + 3 * S + 500, () => checkin("alice", alice.lease, 1, CLEAN)), "AlreadyReturned");
assert.equal([pool.out_flag(), pool.out_conn()].join(), "1,1", "the connection is handed back");
runUntil(8 * H + 4 * S);
expectStats({ idle: 1, resets: 1 });

// 08:00:04 the server goes down. carol gets the idle connection; dave, who will not wait, gets
// psycopg2's connect on demand, and hears that it failed.
serverUp = false;
log("host: --- the database server goes down ---");
const carol = at(8 * H + 4 * S, () => checkout("carol", 0, NO_WAIT));
assert.deepEqual([carol.ready, carol.conn], [true, 1]);
const dave = at(8 * H + 4 * S, () => checkout("dave", 0, NO_WAIT));
assert.ok(dave.waiting);
runUntil(8 * H + 5 * S);
assert.deepEqual(outcomes.get(dave.waiter), { error: "OpenFailed" });

// erin waits up to 2 s: the core retries with a doubling backoff (poll_timeout tells when), every
// open fails, and her deadline passes.
const erin = at(8 * H + 5 * S, () => checkout("erin", 0, 2 * S));
assert.ok(erin.waiting);
runUntil(8 * H + 10 * S);
assert.deepEqual(outcomes.get(erin.waiter), { error: "Timeout" });
const failures = pool.stats_open_failures();
assert.ok(failures >= 4, `the opens were retried (${failures} failures)`);
expectStats({ timeouts: 1, waiting: 0, size: 2 });
assert.equal(pool.poll_timeout(), -1, "no deadline once nobody waits and min is met");
serverUp = true;
log("host: --- the server is back ---");

// bob's connection broke; carol's comes back clean.
assert.equal(at(8 * H + M, () => checkin("bob", bobs.lease, bobs.conn, BROKEN)), "ok");
assert.equal(at(8 * H + M, () => checkin("carol", carol.lease, 1, CLEAN)), "ok");
runUntil(8 * H + 2 * M);
expectStats({ size: 1, idle: 1, broken_returns: 1 });

// 09:00 two at once: frank gets the idle one, grace a new one; both return. At 09:15 the one idle
// for 10 minutes is closed by the max_idle timer, down to min.
const frank = at(9 * H, () => checkout("frank", 0, NO_WAIT));
const grace = at(9 * H, () => checkout("grace", 0, NO_WAIT));
runUntil(9 * H + S);
const graceConn = outcomes.get(grace.waiter).conn;
assert.deepEqual([frank.conn, graceConn], [1, 3]);
at(9 * H + 5 * M, () => checkin("frank", frank.lease, frank.conn, CLEAN));
at(9 * H + 5 * M + 30 * S, () => checkin("grace", outcomes.get(grace.waiter).lease, graceConn, CLEAN));
assert.equal(pool.poll_timeout(), 9 * H + 15 * M, "frank's connection idles out at 09:15");
runUntil(9 * H + 20 * M);
expectStats({ size: 1, idle: 1, expired: 1 });

// 12:00 check the idle connections: the server dropped #3 over lunch, so it is closed and a new
// one opened for min.
checksPass = false;
assert.equal(at(12 * H, () => pool.check_idle(now)), 1);
runUntil(12 * H + S);
checksPass = true;
expectStats({ size: 1, idle: 1, opens: 4 });

// 14:00 another check, but the server stopped answering: #4's check hangs. The host gives up at
// its bound and reports it ABANDONED: the core counts it, closes #4 and opens #5 for min.
checksHang = true;
assert.equal(at(14 * H, () => pool.check_idle(now)), 1);
runUntil(14 * H + BOUND - S);
expectStats({ resetting: 1, abandoned_checks: 0 });
runUntil(14 * H + BOUND + S);
checksHang = false;
expectStats({ size: 1, idle: 1, opens: 5, abandoned_checks: 1, abandoned_resets: 0 });

// 17:00 heidi holds a connection and ivan waits for a new one when the pool closes: ivan fails,
// his open, already under way, lands and is closed; heidi's connection is closed as it comes back.
const heidi = at(17 * H, () => checkout("heidi", 0, Infinity));
assert.deepEqual([heidi.ready, heidi.conn], [true, 5]);
const ivan = at(17 * H, () => checkout("ivan", 0, Infinity));
assert.ok(ivan.waiting);
const closed = at(17 * H + 10, () => {
  log("host: pool_close (psycopg2's closeall)");
  return pool.pool_close(now);
});
assert.equal(closed, 0);
assert.deepEqual(outcomes.get(ivan.waiter), { error: "Closed" });
assert.deepEqual(at(17 * H + S, () => checkout("judy", 0, NO_WAIT)), { error: "Closed" });
assert.equal(at(17 * H + M, () => checkin("heidi", heidi.lease, heidi.conn, CLEAN)), "Closed");
runUntil(17 * H + 2 * M);
assert.equal(pool.is_empty(), 1, "everything closed");
assert.equal(pool.poll_timeout(), -1);
assert.equal(inflight.length, 0);
// Completions the core never asked for are refused, and change nothing.
assert.equal(error(pool.report_closed(now, 0x7fff03, ABANDONED)), "UnknownTicket");
assert.equal(error(pool.report_opened(now, 0, 99)), "UnknownTicket");

const final = stats();
expectStats({
  size: 0, idle: 0, in_use: 0, waiting: 0, checkouts: 6, waits: 2, timeouts: 1, opens: 6,
  open_failures: 5, broken_returns: 1, resets: 1, expired: 1, closes: 6, abandoned_resets: 0,
  abandoned_checks: 1, abandoned_closes: 0,
});
console.log("\nstats at the end of the day:");
console.log(final);
console.log("host.mjs: every expected outcome seen");
