//! The `/metrics` listener of `up --metrics ADDR:PORT`: a non-blocking TCP
//! listener in the shell's epoll loop, one short HTTP/1.1 exchange per
//! connection (parsing and answers in [`crate::metrics::http`], the body
//! from [`crate::metrics::exposition`]). No threads, no async runtime.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::metrics::http::{self, MAX_HEAD};
use crate::sys::poll::{Event, Interest, Poller, Token};

/// Concurrent scrapes; more are accepted and closed at once.
pub(super) const MAX_SCRAPERS: usize = 8;
/// Tokens a [`MetricsServer`] uses: `base ..= base + MAX_SCRAPERS`.
pub(super) const TOKEN_SPAN: u64 = MAX_SCRAPERS as u64 + 1;
/// A connection that has not sent its request (or read the answer) in
/// this time is closed when the next one arrives.
const IDLE: Duration = Duration::from_secs(10);

struct Scrape {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    since: Instant,
}

/// See the module documentation.
pub(super) struct MetricsServer {
    listener: TcpListener,
    conns: Vec<Option<Scrape>>,
    base: Token,
}

impl MetricsServer {
    /// Binds `addr` (non-blocking).
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer {
            listener,
            conns: (0..MAX_SCRAPERS).map(|_| None).collect(),
            base: Token(0),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Registers the listener with `poller` under `base`.
    pub fn register(&mut self, poller: &Poller, base: Token) -> io::Result<()> {
        self.base = base;
        poller.add(&self.listener, base, Interest::READABLE)
    }

    /// `true` if `token` belongs to this server.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base.0 && token.0 < self.base.0 + TOKEN_SPAN
    }

    /// Handles a readiness event: accepts, reads a request head, answers
    /// with `body()` for `/metrics`, closes.
    pub fn handle(
        &mut self,
        poller: &Poller,
        ev: Event,
        now: Instant,
        body: &mut dyn FnMut() -> String,
    ) {
        if ev.token == self.base {
            self.expire(poller, now);
            self.accept_all(poller, now);
            return;
        }
        let idx = (ev.token.0 - self.base.0 - 1) as usize;
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        match serve(c, body) {
            Ok(true) => {
                let _ = poller.modify(&c.stream, ev.token, Interest::BOTH);
            }
            Ok(false) => {}
            Err(()) => self.close(poller, idx),
        }
    }

    fn accept_all(&mut self, poller: &Poller, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let Some(idx) = self.conns.iter().position(Option::is_none) else {
                continue; // full: closed
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = Token(self.base.0 + 1 + idx as u64);
            if poller.add(&stream, token, Interest::READABLE).is_err() {
                continue;
            }
            self.conns[idx] = Some(Scrape {
                stream,
                rbuf: Vec::with_capacity(512),
                wbuf: Vec::new(),
                wpos: 0,
                since: now,
            });
        }
    }

    fn expire(&mut self, poller: &Poller, now: Instant) {
        for idx in 0..self.conns.len() {
            if self.conns[idx]
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.since) > IDLE)
            {
                self.close(poller, idx);
            }
        }
    }

    fn close(&mut self, poller: &Poller, idx: usize) {
        if let Some(c) = self.conns[idx].take() {
            let _ = poller.delete(&c.stream);
        }
    }
}

/// Reads, answers once the head is complete, writes. `Ok(true)`: wait for
/// writability; `Ok(false)`: wait for more input; `Err`: close.
fn serve(c: &mut Scrape, body: &mut dyn FnMut() -> String) -> Result<bool, ()> {
    if c.wbuf.is_empty() {
        let mut tmp = [0u8; 1024];
        loop {
            match c.stream.read(&mut tmp) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    let room = (MAX_HEAD + 1).saturating_sub(c.rbuf.len());
                    c.rbuf.extend_from_slice(&tmp[..n.min(room)]);
                    if room <= n {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(()),
            }
        }
        let head = match http::parse_request_head(&c.rbuf) {
            Ok(None) => return Ok(false),
            Ok(Some(h)) => Ok(h),
            Err(e) => Err(e),
        };
        c.wbuf = http::respond(head, &mut *body);
    }
    while c.wpos < c.wbuf.len() {
        match c.stream.write(&c.wbuf[c.wpos..]) {
            Ok(0) => return Err(()),
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(_) => return Err(()),
        }
    }
    // Answered: close (Connection: close).
    Err(())
}
