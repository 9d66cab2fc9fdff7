//! A passive model of the PostgreSQL wire protocol, fed with the bytes each side sent: just enough
//! to know whether the server is waiting for a command and what its last ReadyForQuery said.

/// Splits a byte stream into messages: a type byte (absent from the frontend's startup message), a
/// big-endian `u32` length that counts itself, then the body. Chunks may split or merge messages
/// anywhere.
#[derive(Debug)]
pub(crate) struct Framer {
    /// Type, length and first body byte of the current message.
    head: [u8; 6],
    /// Bytes of `head` collected so far.
    got: usize,
    /// Body bytes still to skip after `head`.
    skip: usize,
}

impl Framer {
    /// A framer for the backend stream, or for the frontend stream after its startup message.
    pub(crate) fn typed() -> Self {
        Self {
            head: [0; 6],
            got: 0,
            skip: 0,
        }
    }

    /// A framer for the frontend stream, which opens with an untyped startup message (reported as
    /// type 0).
    pub(crate) fn startup() -> Self {
        Self {
            got: 1,
            ..Self::typed()
        }
    }

    /// Feeds a chunk, calling `on(type, first body byte)` once per message as soon as both are
    /// known. Returns false, and stops, on a length below 4: the stream cannot be followed any
    /// further.
    #[inline]
    pub(crate) fn feed(&mut self, data: &[u8], mut on: impl FnMut(u8, Option<u8>)) -> bool {
        // Where in `data` the next message starts (may be past its end: the rest is skipped).
        let mut at = self.skip;
        self.skip = 0;
        if self.got > 0 {
            // A head split across chunks: the byte path (nothing is skipped inside a head).
            debug_assert_eq!(at, 0);
            return self.feed_bytes(data, on);
        }
        // Whole heads at message boundaries (the usual case): read in place.
        while let Some(head) = data.get(at..).and_then(<[u8]>::first_chunk::<6>) {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            match len {
                0..=3 => return false,
                4 => on(head[0], None),
                _ => on(head[0], Some(head[5])),
            }
            // The type byte, then `len` bytes counting the length itself.
            at = at.saturating_add(len).saturating_add(1);
        }
        match data.get(at..) {
            Some([]) => true,
            Some(rest) => self.feed_bytes(rest, on),
            None => {
                self.skip = at - data.len();
                true
            }
        }
    }

    /// [`feed`](Self::feed) a byte at a time, for heads split across chunks: from a message
    /// boundary or inside a head (`self.got`), with nothing to skip first.
    #[cold]
    fn feed_bytes(&mut self, mut data: &[u8], mut on: impl FnMut(u8, Option<u8>)) -> bool {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                (self.skip, data) = (self.skip - n, &data[n..]);
            }
            let Some((&byte, rest)) = data.split_first() else {
                return true;
            };
            (self.head[self.got], self.got, data) = (byte, self.got + 1, rest);
            if self.got < 5 {
                continue;
            }
            let len = u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]])
                as usize;
            match (len, self.got) {
                (0..=3, _) => return false,
                (4, _) => on(self.head[0], None),
                (_, 6) => {
                    on(self.head[0], Some(self.head[5]));
                    self.skip = len - 5;
                }
                _ => continue,
            }
            self.got = 0;
        }
    }
}

/// What the two message streams say about the session. See the rule in the `tracked` module docs.
#[derive(Debug)]
pub(crate) struct Session {
    /// Requests written (Query, FunctionCall, Sync) whose ReadyForQuery has not arrived.
    pending: u32,
    /// How many of the last `pending` requests cannot change the transaction status: a Sync
    /// after nothing but Close (tokio-postgres closes a statement it prepared for one call when
    /// the call ends, and the server may answer after the borrower is done). Closing a statement
    /// changes no transaction state, and is no error even for a name that does not exist.
    harmless_tail: u32,
    /// Since the last Sync, only Close or Flush was written in the extended protocol.
    closes_only: bool,
    /// The server announced CopyInResponse and the client has not yet sent CopyDone or CopyFail.
    copy_in: bool,
    /// The last command written was a simple Query (which owes a ReadyForQuery after its COPY
    /// ends).
    simple: bool,
    /// Status byte of the last ReadyForQuery.
    last: u8,
    /// The streams did something this model does not follow: never report a known state again.
    lost: bool,
    /// End of stream, I/O error, or Terminate written.
    closed: bool,
}

/// What [`Session::state`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing outstanding; the status byte of the last ReadyForQuery ('I', 'T' or 'E').
    Ready(u8),
    /// Something outstanding, or the model is lost.
    Unknown,
    Closed,
}

impl Session {
    pub(crate) fn new() -> Self {
        // The startup message owes a ReadyForQuery too.
        Self {
            pending: 1,
            harmless_tail: 0,
            closes_only: true,
            copy_in: false,
            simple: false,
            last: 0,
            lost: false,
            closed: false,
        }
    }

    /// One frontend message of type `ty` (0 for the startup message) was written.
    pub(crate) fn frontend(&mut self, ty: u8) {
        match (ty, self.copy_in) {
            (b'Q' | b'F', false) => {
                (self.pending, self.simple) = (self.pending + 1, ty == b'Q');
                (self.harmless_tail, self.closes_only) = (0, true);
            }
            (b'E', false) => (self.simple, self.closes_only) = (false, false),
            (b'S', false) => {
                self.pending += 1;
                self.harmless_tail = if self.closes_only {
                    self.harmless_tail + 1
                } else {
                    0
                };
                self.closes_only = true;
            }
            // Close, Flush, and the startup message (its answer is counted in `pending` already).
            (b'C' | b'H' | 0, false) => {}
            // The copy ends: the Syncs written since the command that started it were swallowed by
            // the server (it ignores Sync and Flush in COPY IN); a simple Query still owes its
            // ReadyForQuery.
            (b'c' | b'f', true) => {
                (self.pending, self.copy_in) = (self.simple.into(), false);
                // The Sync that follows answers for the copy's command.
                (self.harmless_tail, self.closes_only) = (0, false);
            }
            // A copy ended that the server never started: it will answer the Sync that follows,
            // and the Sync sent with the Execute, with two ReadyForQuery where tokio-postgres
            // awaits one (rust-postgres issue 789). Its replies are then misrouted: give it up.
            (b'c' | b'f', false) | (b'X', _) => self.closed = true,
            // Copy data, and Sync/Flush, which the server swallows during COPY IN.
            (b'd' | b'S' | b'H', _) => {}
            (_, true) => self.lost = true,
            // Parse, Bind, Describe and the rest: the batch does work.
            _ => self.closes_only = false,
        }
    }

    /// One backend message of type `ty` arrived, with its first body byte if it has one.
    pub(crate) fn backend(&mut self, ty: u8, first: Option<u8>) {
        match ty {
            b'Z' => {
                // A ReadyForQuery nobody asked for means our count is wrong.
                self.lost |= self.pending == 0;
                self.pending = self.pending.saturating_sub(1);
                self.harmless_tail = self.harmless_tail.min(self.pending);
                (self.last, self.copy_in) = (first.unwrap_or(0), false);
            }
            b'G' => self.copy_in = true,
            // An ErrorResponse no request asked for is FATAL: the server is closing the connection.
            b'E' if self.pending == 0 => self.closed = true,
            b'W' => self.lost = true, // COPY BOTH (replication) is not modelled
            _ => {}
        }
    }

    /// The stream ended, failed, or could not be framed.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn lose(&mut self) {
        self.lost = true;
    }

    pub(crate) fn state(&self) -> State {
        match self {
            Self { closed: true, .. } => State::Closed,
            Self {
                lost: false,
                copy_in: false,
                last: last @ (b'I' | b'T' | b'E'),
                pending,
                harmless_tail,
                ..
            } if pending == harmless_tail => State::Ready(*last),
            _ => State::Unknown,
        }
    }
}

/// Catches the startup's BackendKeyData (the process id and secret key a cancel request
/// quotes), then stops: after the key, or the first ReadyForQuery, it reads nothing more.
#[derive(Debug)]
pub(crate) struct KeyCatcher {
    /// Type and length of the current message.
    head: [u8; 5],
    got: usize,
    /// The key's 8 bytes, while in a BackendKeyData.
    key: [u8; 8],
    in_key: usize,
    /// Body bytes still to skip.
    skip: usize,
    done: bool,
}

impl KeyCatcher {
    pub(crate) fn new() -> Self {
        KeyCatcher {
            head: [0; 5],
            got: 0,
            key: [0; 8],
            in_key: 0,
            skip: 0,
            done: false,
        }
    }

    /// Whether it reads no more.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Feeds backend bytes; the key once its message is complete.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Option<[u8; 8]> {
        while !self.done && !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                (self.skip, data) = (self.skip - n, &data[n..]);
                continue;
            }
            if self.got < 5 {
                self.head[self.got] = data[0];
                (self.got, data) = (self.got + 1, &data[1..]);
                if self.got < 5 {
                    continue;
                }
                let len =
                    u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
                match (self.head[0], len) {
                    (_, 0..=3) | (b'Z', _) => self.done = true,
                    (b'K', 12) => self.in_key = 0,
                    (_, len) => (self.skip, self.got) = (len as usize - 4, 0),
                }
                continue;
            }
            // Inside a BackendKeyData.
            let n = (8 - self.in_key).min(data.len());
            self.key[self.in_key..self.in_key + n].copy_from_slice(&data[..n]);
            (self.in_key, data) = (self.in_key + n, &data[n..]);
            if self.in_key == 8 {
                self.done = true;
                return Some(self.key);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Feeds `stream` cut at every `step` bytes and returns the messages seen.
    fn frame(mut framer: Framer, stream: &[u8], step: usize) -> Vec<(u8, Option<u8>)> {
        let mut seen = Vec::new();
        for chunk in stream.chunks(step) {
            assert!(framer.feed(chunk, |ty, first| seen.push((ty, first))));
        }
        seen
    }

    #[test]
    fn framer_handles_split_and_merged_chunks() {
        let stream = [
            msg(b'R', &[0, 0, 0, 0]),
            msg(b'S', b"a\0b\0"),
            msg(b'Z', b"I"),
            msg(b'1', b""),
            msg(b'Z', b"T"),
        ]
        .concat();
        let want = vec![
            (b'R', Some(0)),
            (b'S', Some(b'a')),
            (b'Z', Some(b'I')),
            (b'1', None),
            (b'Z', Some(b'T')),
        ];
        for step in 1..=stream.len() {
            assert_eq!(frame(Framer::typed(), &stream, step), want, "step {step}");
        }
    }

    #[test]
    fn framer_skips_the_untyped_startup_message() {
        let mut startup = (17u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&[0, 3, 0, 0, b'u', b's', b'e', b'r', 0, b'x', 0, 0, 0]);
        let stream = [startup, msg(b'Q', b"SELECT 1\0"), msg(b'S', b"")].concat();
        for step in 1..=stream.len() {
            assert_eq!(
                frame(Framer::startup(), &stream, step),
                vec![(0, Some(0)), (b'Q', Some(b'S')), (b'S', None)]
            );
        }
    }

    #[test]
    fn framer_rejects_a_short_length() {
        assert!(!Framer::typed().feed(&[b'Z', 0, 0, 0, 3], |_, _| panic!("no message")));
        // Also when the whole head is in one chunk.
        assert!(!Framer::typed().feed(&[b'Z', 0, 0, 0, 3, b'I'], |_, _| panic!("no message")));
    }

    /// Plays frontend messages (`>` then type) and backend ones (`<` then type, `Z` followed by its
    /// status).
    fn play(script: &str) -> State {
        let mut s = Session::new();
        let mut bytes = script.bytes();
        while let Some(dir) = bytes.next() {
            match (dir, bytes.next().unwrap()) {
                (b'>', ty) => s.frontend(ty),
                (b'<', b'Z') => s.backend(b'Z', bytes.next()),
                (b'<', ty) => s.backend(ty, Some(0)),
                _ => unreachable!("bad script"),
            }
        }
        s.state()
    }

    #[test]
    fn session_follows_requests_and_copies() {
        let up = ">\0<R<ZI";
        assert_eq!(play(">\0<R"), State::Unknown);
        assert_eq!(play(up), State::Ready(b'I'));
        assert_eq!(play(&format!("{up}>Q<C<ZT")), State::Ready(b'T'));
        // Pipelined requests: one answered, one outstanding.
        assert_eq!(play(&format!("{up}>Q>P>B>E>S<C<ZI")), State::Unknown);
        assert_eq!(
            play(&format!("{up}>Q>P>B>E>S<C<ZI<1<2<C<ZE")),
            State::Ready(b'E')
        );
        // tokio-postgres copy_in: Bind Execute Sync, CopyInResponse, data, then CopyDone|CopyFail
        // Sync.
        let copy = format!("{up}>B>E>S<2<G>d>d");
        assert_eq!(play(&copy), State::Unknown);
        assert_eq!(play(&format!("{copy}>c>S")), State::Unknown);
        assert_eq!(play(&format!("{copy}>c>S<C<ZI")), State::Ready(b'I'));
        assert_eq!(play(&format!("{copy}>f>S<E<ZI>Q<C<ZI")), State::Ready(b'I'));
        assert_eq!(play(&format!("{copy}<E>c>S<ZI")), State::Ready(b'I'));
        // A simple-query COPY owes its ReadyForQuery after CopyDone.
        assert_eq!(play(&format!("{up}>Q<G>d>c<C<ZI")), State::Ready(b'I'));
        // The COPY failed to start, and tokio-postgres still sends CopyFail + Sync.
        assert_eq!(play(&format!("{up}>B>E>S<2<E<ZI")), State::Ready(b'I'));
        assert_eq!(play(&format!("{up}>B>E>S<2<E<ZI>f>S")), State::Closed);
        // COPY OUT cut short.
        assert_eq!(play(&format!("{up}>B>E>S<2<H<d<d")), State::Unknown);
        // A Query in the middle of COPY IN, an unasked ReadyForQuery, Terminate.
        assert_eq!(play(&format!("{up}>Q<G>Q<E<ZI<C<ZI")), State::Unknown);
        assert_eq!(play(&format!("{up}<ZI")), State::Unknown);
        assert_eq!(play(&format!("{up}>X")), State::Closed);
        assert_eq!(play(&format!("{up}<E")), State::Closed);
        assert_eq!(play(&format!("{up}>Q<E<ZI")), State::Ready(b'I'));
    }

    /// A statement closed after its one call (tokio-postgres's `query` with SQL text) cannot
    /// change the transaction status: the last status holds while its answer is on its way. Any
    /// other outstanding work makes the status unknown.
    #[test]
    fn closing_a_statement_changes_no_status() {
        let up = ">\0<R<ZI";
        let call = format!("{up}>P>D>S<1<t<T<ZI>B>E>S<2<D<C<ZI");
        assert_eq!(play(&call), State::Ready(b'I'));
        assert_eq!(play(&format!("{call}>C>S")), State::Ready(b'I'));
        assert_eq!(play(&format!("{call}>C>H>C>S>C>S")), State::Ready(b'I'));
        assert_eq!(play(&format!("{call}>C>S<3<ZI")), State::Ready(b'I'));
        // Inside a transaction, or a failed one, the status stays what it was.
        let begun = format!("{up}>Q<C<ZT");
        assert_eq!(play(&format!("{begun}>C>S")), State::Ready(b'T'));
        let failed = format!("{up}>Q<C<ZT>Q<E<ZE");
        assert_eq!(play(&format!("{failed}>C>S")), State::Ready(b'E'));
        // Not harmless: a close batched with other work, work queued behind the close, or a
        // close still waiting for its Sync.
        assert_eq!(play(&format!("{call}>C>B>E>S")), State::Unknown);
        assert_eq!(play(&format!("{call}>C>S>Q")), State::Unknown);
        assert_eq!(play(&format!("{call}>Q>C>S")), State::Unknown);
        assert_eq!(play(&format!("{call}>Q>C>S<C<ZT")), State::Ready(b'T'));
        assert_eq!(play(&format!("{call}>C")), State::Ready(b'I'));
        assert_eq!(play(&format!("{call}>C>P")), State::Ready(b'I'));
        assert_eq!(play(&format!("{call}>C>P>S")), State::Unknown);
    }

    #[test]
    fn the_key_is_caught_whatever_the_chunks() {
        let mut stream = msg(b'R', &[0, 0, 0, 0]);
        stream.extend(msg(b'S', b"server_version\x0015\x00"));
        stream.extend(msg(b'K', &[0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]));
        stream.extend(msg(b'Z', b"I"));
        for size in 1..stream.len() {
            let mut catcher = KeyCatcher::new();
            let caught: Vec<_> = stream
                .chunks(size)
                .filter_map(|c| catcher.feed(c))
                .collect();
            assert_eq!(
                caught,
                [[0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]],
                "chunks of {size}"
            );
            assert!(catcher.done());
        }
        // No key before the first ReadyForQuery: none, and nothing read after.
        let mut catcher = KeyCatcher::new();
        let mut stream = msg(b'Z', b"I");
        stream.extend(msg(b'K', &[1; 8]));
        assert_eq!(catcher.feed(&stream), None);
        assert!(catcher.done());
    }
}
