//! A TCP proxy between a client and a `redis-server`, which a test tells to
//! lose replies, hold them back, delay them, cut every connection, or stop
//! passing anything on without closing (a network partition).
//!
//! tollgate sends one request at a time on a connection and waits for its
//! reply, so the first bytes the server sends after a request are that
//! request's reply. That is what lets the proxy lose "the reply to the next
//! request that contains X" without parsing RESP: the request reaches the
//! server and runs, and the client sees its connection break (or, when held
//! back, no reply until its response timeout).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

/// What to do to the reply of a request that contains a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFault {
    /// The request runs; its reply is thrown away and the connection cut.
    Drop,
    /// The request runs; its reply is never sent (the client times out),
    /// and the connection is cut once the client gives up.
    Hold,
    /// The request runs; its reply is sent this much later (a slow network
    /// or server), the connection kept.
    Delay(Duration),
}

struct Rule {
    pattern: Vec<u8>,
    fault: ReplyFault,
    remaining: usize,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    /// Every proxied socket, so that `cut_all` can close them.
    sockets: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
    faults_applied: Mutex<usize>,
    /// Bytes in either direction are read and thrown away.
    partitioned: AtomicBool,
    /// Proxied connections neither side has closed yet.
    open: AtomicUsize,
    /// The loopback port new connections are proxied to.
    upstream: AtomicU16,
}

/// A proxy on a free loopback port in front of `127.0.0.1:upstream`; it
/// stops accepting and cuts its connections on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts proxying to the server on `upstream` (a loopback port).
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("proxy binds a free port");
        let port = listener.local_addr().expect("bound address").port();
        let shared = Arc::new(Shared {
            upstream: AtomicU16::new(upstream),
            ..Shared::default()
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept(&listener, &accepting))
            .expect("proxy thread starts");
        FaultProxy { port, shared }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Applies `fault` to the replies of the next `count` requests whose
    /// bytes contain `pattern` (a script's SHA, a command name, a key).
    pub fn fault_replies(&self, pattern: impl AsRef<[u8]>, fault: ReplyFault, count: usize) {
        self.shared.rules.lock().push(Rule {
            pattern: pattern.as_ref().to_vec(),
            fault,
            remaining: count,
        });
    }

    /// How many replies were dropped, held back or delayed so far.
    pub fn faults_applied(&self) -> usize {
        *self.shared.faults_applied.lock()
    }

    /// Stops passing bytes on, in both directions and on every connection,
    /// new ones included, without closing any (a network partition, or a
    /// host that vanished): what is sent meanwhile is lost.
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::Release);
    }

    /// Passes bytes on again after [`partition`](Self::partition).
    pub fn heal(&self) {
        self.shared.partitioned.store(false, Ordering::Release);
    }

    /// Sends new connections to the server on `upstream` from now on, the
    /// open ones staying where they are (a DNS name or virtual IP moved to
    /// another server).
    pub fn retarget(&self, upstream: u16) {
        self.shared.upstream.store(upstream, Ordering::Release);
    }

    /// Proxied connections that neither side has closed.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Cuts every open connection (as `CLIENT KILL` or a network blip
    /// would); new connections are accepted as before.
    pub fn cut_all(&self) {
        for socket in self.shared.sockets.lock().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.cut_all();
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let upstream = shared.upstream.load(Ordering::Acquire);
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            continue; // the client sees its connection close
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if let Err(error) = pipe_pair(client, server, shared) {
            eprintln!("fault proxy: cannot proxy a connection: {error}");
        }
    }
}

/// The fault armed for the reply that comes next on one connection.
type Armed = Arc<Mutex<Option<ReplyFault>>>;

fn pipe_pair(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    {
        let mut sockets = shared.sockets.lock();
        sockets.push(client.try_clone()?);
        sockets.push(server.try_clone()?);
    }
    let armed: Armed = Arc::default();
    shared.open.fetch_add(1, Ordering::AcqRel);
    let (client_in, server_out) = (client.try_clone()?, server.try_clone()?);
    let (requests_shared, requests_armed) = (Arc::clone(shared), Arc::clone(&armed));
    thread::spawn(move || {
        forward_requests(client_in, server_out, &requests_shared, &requests_armed)
    });
    let replies_shared = Arc::clone(shared);
    thread::spawn(move || forward_replies(server, client, &replies_shared, &armed));
    Ok(())
}

fn forward_requests(mut from: TcpStream, mut to: TcpStream, shared: &Shared, armed: &Armed) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if shared.partitioned.load(Ordering::Acquire) {
            continue;
        }
        let fault = {
            let mut rules = shared.rules.lock();
            let hit = rules
                .iter_mut()
                .find(|rule| rule.remaining > 0 && contains(chunk, &rule.pattern));
            hit.map(|rule| {
                rule.remaining -= 1;
                rule.fault
            })
        };
        if let Some(fault) = fault {
            *armed.lock() = Some(fault);
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.open.fetch_sub(1, Ordering::AcqRel);
}

fn forward_replies(mut from: TcpStream, mut to: TcpStream, shared: &Shared, armed: &Armed) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.partitioned.load(Ordering::Acquire) {
            continue;
        }
        match armed.lock().take() {
            None => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Some(ReplyFault::Drop) => {
                *shared.faults_applied.lock() += 1;
                break;
            }
            Some(ReplyFault::Delay(delay)) => {
                *shared.faults_applied.lock() += 1;
                thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Some(ReplyFault::Hold) => {
                *shared.faults_applied.lock() += 1;
                // Never forwarded: wait until the client gives up and closes
                // (its next read ends the request side, which shuts us down).
                let mut probe = [0u8; 1];
                let _ = to.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = to.peek(&mut probe);
                break;
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
