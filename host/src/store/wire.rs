//! The blocking connection that carries tollgate's commands: its own RESP2
//! reader over a plain TCP or Unix socket, and the `redis` crate's
//! connection for TLS.
//!
//! The `redis` crate's blocking reader zeroes an 8 KiB buffer for every
//! reply, which was a third of the client's instructions per lock cycle.
//! This reader keeps one buffer per connection, parses replies in place and
//! allocates only the values it returns. It speaks the RESP2 that tollgate's
//! handshake asks for; server errors are turned into `redis` errors by the
//! `redis` crate itself, so every caller sees the same error kinds and codes.
//!
//! A connection that failed a read or a write, or received a reply it could
//! not parse, reports itself closed: a late reply may still be on its way,
//! so the pool never reuses it. A listening connection (pub/sub) reads with
//! [`Connection::next_message`] instead, where a quiet spell is not a
//! failure.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

/// The buffer a connection starts with, and keeps between replies.
const BUFFER: usize = 16 * 1024;
/// Replies nest at most this deep (tollgate's nest two levels).
const MAX_DEPTH: usize = 32;
/// The longest bulk string read (Redis's own default `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// A blocking connection to one Redis server that carries commands.
pub(crate) enum Connection {
    /// Plain TCP or a Unix socket, read by tollgate's reader.
    Direct(Direct),
    /// TLS, through the `redis` crate.
    Library(redis::Connection),
}

impl Connection {
    /// Connects to the server `info` names within `timeout`. `client` opens
    /// the connections this module does not read itself (TLS).
    pub fn open(
        info: &redis::ConnectionInfo,
        client: &redis::Client,
        timeout: Duration,
    ) -> RedisResult<Connection> {
        match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                Direct::tcp(host, *port, timeout).map(Connection::Direct)
            }
            #[cfg(unix)]
            redis::ConnectionAddr::Unix(path) => Ok(Connection::Direct(Direct::new(Stream::Unix(
                UnixStream::connect(path)?,
            )))),
            _ => client
                .get_connection_with_timeout(timeout)
                .map(Connection::Library),
        }
    }

    /// Bounds every later read and write by `timeout` (not zero).
    pub fn set_timeouts(&self, timeout: Duration) -> RedisResult<()> {
        match self {
            Connection::Direct(direct) => Ok(direct.stream.set_timeouts(timeout)?),
            Connection::Library(conn) => {
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))
            }
        }
    }

    /// Makes [`next_message`](Self::next_message) give up after `quiet`
    /// without a byte, and returns `true`; or, on a connection that cannot
    /// (TLS, read by the `redis` crate, which loses its place in the stream
    /// on a read timeout), makes it wait without limit and returns `false`.
    pub fn set_quiet_timeout(&self, quiet: Duration) -> RedisResult<bool> {
        match self {
            Connection::Direct(direct) => {
                direct.stream.set_read_timeout(quiet)?;
                Ok(true)
            }
            Connection::Library(conn) => {
                conn.set_read_timeout(None)?;
                Ok(false)
            }
        }
    }

    /// Sends a command without reading its reply: on a listening
    /// connection, replies come in order among the messages.
    pub fn send_only(&mut self, cmd: &redis::Cmd) -> RedisResult<()> {
        match self {
            Connection::Direct(direct) => direct.packed(cmd, Direct::send),
            Connection::Library(conn) => conn.send_packed_command(&cmd.get_packed_command()),
        }
    }

    /// The next message or reply on a listening connection, or `None` when
    /// nothing arrived within the quiet timeout (the connection stays
    /// usable: a message cut off by it is completed by the next call).
    pub fn next_message(&mut self) -> RedisResult<Option<Value>> {
        match self {
            Connection::Direct(direct) => direct.next_message(),
            Connection::Library(conn) => conn.recv_response().map(Some),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Connection::Direct(direct) => direct.request(cmd),
            Connection::Library(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Connection::Direct(direct) => direct.request_many(cmd, offset, count),
            Connection::Library(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> RedisResult<Value> {
        match self {
            Connection::Direct(direct) => direct.packed(cmd, Direct::request),
            Connection::Library(conn) => conn.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            // The handshake selects the database itself.
            Connection::Direct(_) => 0,
            Connection::Library(conn) => conn.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        match self {
            Connection::Direct(direct) => direct.open,
            Connection::Library(conn) => conn.is_open(),
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
        }
    }

    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(buf),
        }
    }
}

/// A socket with tollgate's RESP2 reader.
pub(crate) struct Direct {
    stream: Stream,
    /// Bytes read and not yet parsed are `incoming[start..end]`.
    incoming: Vec<u8>,
    start: usize,
    end: usize,
    /// The last command sent, kept for its allocation.
    outgoing: Vec<u8>,
    open: bool,
}

impl Direct {
    fn new(stream: Stream) -> Direct {
        Direct {
            stream,
            incoming: vec![0; BUFFER],
            start: 0,
            end: 0,
            outgoing: Vec::new(),
            open: true,
        }
    }

    /// Connects to the first address of `host` that answers, each within
    /// `timeout`, with Nagle's algorithm off (one command is one write).
    fn tcp(host: &str, port: u16, timeout: Duration) -> RedisResult<Direct> {
        let mut last_error = None;
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Direct::new(Stream::Tcp(stream)));
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
            })
            .into())
    }

    /// Packs `cmd` into the buffer kept for it and passes it to `then`.
    fn packed<T>(&mut self, cmd: &redis::Cmd, then: impl FnOnce(&mut Direct, &[u8]) -> T) -> T {
        let mut packed = std::mem::take(&mut self.outgoing);
        packed.clear();
        cmd.write_packed_command(&mut packed);
        let result = then(self, &packed);
        if packed.capacity() <= BUFFER {
            // Kept for the next command; a large one's is let go.
            self.outgoing = packed;
        }
        result
    }

    fn request(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.read_reply()
    }

    /// Sends a pipeline and returns replies `offset..offset + count`. A
    /// server error among the first `offset` replies (a command refused
    /// inside `MULTI`) is returned as the error.
    fn request_many(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut refused = None;
        let mut replies = Vec::with_capacity(count);
        for index in 0..offset + count {
            match self.read_reply()? {
                Value::ServerError(error) if index < offset => {
                    refused.get_or_insert(error);
                }
                reply if index >= offset => replies.push(reply),
                _ => {}
            }
        }
        match refused {
            Some(error) => Err(error.into()),
            None => Ok(replies),
        }
    }

    fn send(&mut self, cmd: &[u8]) -> RedisResult<()> {
        if !self.open {
            return Err(
                io::Error::new(io::ErrorKind::NotConnected, "the connection was closed").into(),
            );
        }
        self.stream.write_all(cmd).map_err(|error| {
            self.open = false;
            error.into()
        })
    }

    /// Reads one whole reply.
    fn read_reply(&mut self) -> RedisResult<Value> {
        loop {
            if let Some(value) = self.parsed()? {
                return Ok(value);
            }
            self.fill(false)?;
        }
    }

    /// Reads one whole message, or `None` when the read timeout passed
    /// without a byte (bytes of a message begun stay buffered).
    fn next_message(&mut self) -> RedisResult<Option<Value>> {
        loop {
            if let Some(value) = self.parsed()? {
                return Ok(Some(value));
            }
            if !self.fill(true)? {
                return Ok(None);
            }
        }
    }

    /// The next reply, when the buffer holds all of it.
    fn parsed(&mut self) -> RedisResult<Option<Value>> {
        match parse(&self.incoming[self.start..self.end], 0) {
            Ok(Some((value, used))) => {
                self.start += used;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                    if self.incoming.len() > BUFFER {
                        // A large reply grew the buffer: give it back.
                        self.incoming.truncate(BUFFER);
                        self.incoming.shrink_to_fit();
                    }
                }
                Ok(Some(value))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.open = false;
                Err(error)
            }
        }
    }

    /// Reads more bytes, making room first when the buffer is full. Returns
    /// `false` when `quiet_is_fine` and the read timed out: nothing was
    /// read and the connection stays open.
    fn fill(&mut self, quiet_is_fine: bool) -> RedisResult<bool> {
        if self.end == self.incoming.len() {
            if self.start > 0 {
                self.incoming.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.incoming.len() * 2;
                self.incoming.resize(grown, 0);
            }
        }
        match self.stream.read(&mut self.incoming[self.end..]) {
            Ok(0) => {
                self.open = false;
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
                .into())
            }
            Ok(read) => {
                self.end += read;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error)
                if quiet_is_fine
                    && matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                Ok(false)
            }
            Err(error) => {
                self.open = false;
                Err(error.into())
            }
        }
    }
}

/// Parses one RESP2 reply at the start of `input`: the value and the bytes
/// it took, or `None` when `input` ends before the reply does.
fn parse(input: &[u8], depth: usize) -> RedisResult<Option<(Value, usize)>> {
    let Some((line, mut used)) = line(input)? else {
        return Ok(None);
    };
    let Some((&kind, body)) = line.split_first() else {
        return Err(garbage("an empty line"));
    };
    let value = match kind {
        b'+' => match std::str::from_utf8(body) {
            Ok("OK") => Value::Okay,
            Ok(text) => Value::SimpleString(text.to_owned()),
            Err(_) => return Err(garbage("a simple string that is not UTF-8")),
        },
        // The `redis` crate makes the error from its own line, so codes and
        // kinds (NOSCRIPT, MOVED, WRONGTYPE, ...) are exactly its own.
        b'-' => redis::parse_redis_value(&input[..used])?,
        b':' => Value::Int(integer(body)?),
        b'$' => {
            let Ok(size) = usize::try_from(integer(body)?) else {
                return Ok(Some((Value::Nil, used)));
            };
            if size > MAX_BULK {
                return Err(garbage("a bulk string over 512 MiB"));
            }
            let Some(rest) = input.get(used..used + size + 2) else {
                return Ok(None);
            };
            if &rest[size..] != b"\r\n" {
                return Err(garbage("a bulk string without its CRLF"));
            }
            used += size + 2;
            Value::BulkString(rest[..size].to_vec())
        }
        b'*' => {
            let Ok(length) = usize::try_from(integer(body)?) else {
                return Ok(Some((Value::Nil, used)));
            };
            if depth >= MAX_DEPTH {
                return Err(garbage("arrays nested too deep"));
            }
            // Reserve little up front: the announced length is the
            // server's word, and nested arrays would multiply it.
            let mut items = Vec::with_capacity(length.min(64));
            for _ in 0..length {
                let Some((item, took)) = parse(&input[used..], depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                used += took;
            }
            Value::Array(items)
        }
        _ => return Err(garbage_at("a reply type RESP2 does not have", line)),
    };
    Ok(Some((value, used)))
}

/// The first line of `input` without its CRLF, and the bytes up to and
/// including the CRLF; `None` when no line ends yet.
fn line(input: &[u8]) -> RedisResult<Option<(&[u8], usize)>> {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    match input[..end].strip_suffix(b"\r") {
        Some(line) => Ok(Some((line, end + 1))),
        None => Err(garbage_at("a line ending without CR", &input[..end])),
    }
}

fn integer(digits: &[u8]) -> RedisResult<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| garbage("an integer that is not a number"))
}

/// A parse error that shows the start of the offending line: a server
/// that is not Redis (HTTP, say) is recognised by it.
fn garbage_at(what: &str, line: &[u8]) -> RedisError {
    let shown = String::from_utf8_lossy(&line[..line.len().min(40)]);
    garbage(&format!("{what}: {:?}", shown.trim_end()))
}

fn garbage(what: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unreadable reply",
        format!("the server sent {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> Value {
        let (value, used) = parse(input, 0).unwrap().unwrap();
        assert_eq!(used, input.len());
        value
    }

    #[test]
    fn every_resp2_reply_parses_as_the_redis_crate_parses_it() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"+PONG\r\n",
            b":-42\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n:1\r\n$2\r\nab\r\n*2\r\n+x\r\n$-1\r\n",
            b"$4\r\na\r\nb\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            b"*2\r\n-ERR inner\r\n:1\r\n",
        ];
        for reply in replies {
            assert_eq!(
                whole(reply),
                redis::parse_redis_value(reply).unwrap(),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn a_reply_cut_anywhere_asks_for_more() {
        let reply = b"*3\r\n:1\r\n$2\r\nab\r\n*2\r\n+x\r\n$-1\r\n";
        for cut in 0..reply.len() {
            assert!(parse(&reply[..cut], 0).unwrap().is_none(), "cut at {cut}");
        }
        assert!(parse(reply, 0).unwrap().is_some());
    }

    #[test]
    fn a_reply_followed_by_another_takes_only_its_own_bytes() {
        let (value, used) = parse(b":1\r\n:2\r\n", 0).unwrap().unwrap();
        assert_eq!((value, used), (Value::Int(1), 4));
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        let garbage: &[&[u8]] = &[
            b"?what\r\n",
            b"\r\n",
            b":12x\r\n",
            b"$2\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"+\xff\xfe\r\n",
            b":1\n",
        ];
        for input in garbage {
            let error = parse(input, 0).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Parse, "{input:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(
            parse(deep.as_bytes(), 0).unwrap_err().kind(),
            ErrorKind::Parse
        );
        // A huge announced length reserves nothing it cannot fill.
        assert!(parse(b"*4000000000\r\n:1\r\n", 0).unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_message_cut_by_a_quiet_timeout_is_completed_by_the_next_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut conn = Connection::Direct(Direct::new(Stream::Unix(ours)));
        assert!(conn.set_quiet_timeout(Duration::from_millis(20)).unwrap());
        let message = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$3\r\nkey\r\n";
        assert_eq!(conn.next_message().unwrap(), None, "nothing sent yet");
        theirs.write_all(&message[..20]).unwrap();
        assert_eq!(conn.next_message().unwrap(), None, "half a message");
        assert!(conn.is_open(), "a quiet spell does not close it");
        theirs.write_all(&message[20..]).unwrap();
        assert_eq!(conn.next_message().unwrap(), Some(whole(message)));
        drop(theirs);
        assert!(conn.next_message().is_err(), "a closed peer is an error");
        assert!(!conn.is_open());
    }
}
