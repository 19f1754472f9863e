//! The control socket: a root-only Unix stream socket speaking
//! line-delimited JSON.
//!
//! Protocol: the client writes one JSON object per line, e.g.
//! `{"cmd":"status"}`, `{"cmd":"initiate","name":"Tunnel1"}`,
//! `{"cmd":"terminate","name":"Tunnel1"}` or `{"cmd":"reload"}`; the server
//! answers each with one line, `{"ok":true,"status":{...}}`,
//! `{"ok":true,"message":"..."}`, `{"ok":true,"reload":{...}}` or
//! `{"ok":false,"error":"..."}`.
//!
//! [`ControlServer`] is non-blocking and plugs into the runtime's
//! [`Poller`] under a fixed token range; [`query`] / [`status_text`] are
//! the client side used by `tun-bridge status [--json]`.

use crate::sys::cred;
use crate::sys::poll::{Event, Interest, Poller, Token};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default control socket path.
pub const DEFAULT_SOCKET_PATH: &str = "/run/tun-bridge.sock";
/// Longest accepted request line (bytes, without the newline).
pub const MAX_REQUEST_LEN: usize = 4096;
/// Concurrent client connections; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = 16;
/// Tokens a [`ControlServer`] uses: `base ..= base + MAX_CLIENTS`.
pub const TOKEN_SPAN: u64 = MAX_CLIENTS as u64 + 1;

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Report the status of every tunnel.
    Status,
    /// Bring a connection up now (swanctl `--initiate`, Libreswan
    /// `ipsec up`); resets its attempts.
    Initiate {
        /// Connection name.
        name: String,
    },
    /// Delete a connection's IKE SA and keep it down until `initiate` or a
    /// reload (swanctl `--terminate`, Libreswan `ipsec down`).
    Terminate {
        /// Connection name.
        name: String,
    },
    /// Re-read ipsec.conf and ipsec.secrets and apply the difference.
    Reload,
}

/// A server answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `true` if the request was served.
    pub ok: bool,
    /// Status document (answer to [`Request::Status`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    /// What a command did (answer to initiate/terminate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What a reload kept, changed, added and removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    /// Error description when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of a reload: connection names by what happened to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Same effective settings: IKE and Child SAs untouched.
    pub kept: Vec<String>,
    /// New settings applied; each with how (see [`ChangedConn`]).
    pub changed: Vec<ChangedConn>,
    /// New connections (started per `auto=`).
    pub added: Vec<String>,
    /// Connections no longer configured (DELETE sent, interface removed).
    pub removed: Vec<String>,
}

/// One changed connection of a [`ReloadReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedConn {
    /// Connection name.
    pub name: String,
    /// How the new settings are applied: `in place` (no SA touched),
    /// `child rekey` / `ike rekey` (make-before-break) or `restart`.
    pub how: String,
    /// The settings that differ.
    pub settings: Vec<String>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        writeln!(f, "kept: {}", list(&self.kept))?;
        if self.changed.is_empty() {
            writeln!(f, "changed: -")?;
        } else {
            let c: Vec<String> = self
                .changed
                .iter()
                .map(|c| format!("{} ({}: {})", c.name, c.how, c.settings.join(" ")))
                .collect();
            writeln!(f, "changed: {}", c.join(", "))?;
        }
        writeln!(f, "added: {}", list(&self.added))?;
        writeln!(f, "removed: {}", list(&self.removed))
    }
}

impl Response {
    /// Successful status answer.
    pub fn status(s: StatusReport) -> Response {
        Response {
            ok: true,
            status: Some(s),
            ..Response::empty()
        }
    }

    /// Successful command answer with a message for the operator.
    pub fn done(msg: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(msg.into()),
            ..Response::empty()
        }
    }

    /// Successful reload answer.
    pub fn reloaded(r: ReloadReport) -> Response {
        Response {
            ok: true,
            reload: Some(r),
            ..Response::empty()
        }
    }

    /// Error answer.
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::empty()
        }
    }

    fn empty() -> Response {
        Response {
            ok: false,
            status: None,
            message: None,
            reload: None,
            error: None,
        }
    }
}

/// Whole-daemon status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Daemon version.
    pub version: String,
    /// Daemon PID.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// One entry per configured tunnel.
    pub tunnels: Vec<TunnelStatus>,
    /// Process-wide IKE counters (flood limits, messages received).
    #[serde(default)]
    pub ike: IkeStatus,
}

/// Process-wide IKE counters: ike-lite's `EndpointStats` as a document
/// (maps keyed by reason and exchange type, ready to become metric labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeStatus {
    /// Half-open responder IKE SAs now.
    pub half_open: u64,
    /// Source addresses now at the block threshold.
    pub blocked_sources: u64,
    /// COOKIE notifies sent.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests with a valid cookie.
    pub cookies_verified: u64,
    /// Half-open IKE SAs freed by the half-open timeout.
    pub half_open_expired: u64,
    /// New IKE_SA_INIT requests dropped, by reason (`blocked_source`,
    /// `half_open_limit`, `bad_cookie`, `oversized`, `malformed`).
    pub init_dropped: BTreeMap<String, u64>,
    /// IKE messages received by exchange type (`ike_sa_init`, `ike_auth`,
    /// `create_child_sa`, `informational`, `other`).
    pub received: BTreeMap<String, IkeOutcomes>,
    /// Datagrams without a usable IKE header.
    pub received_unparsable: u64,
}

/// Received IKE messages of one exchange type, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeOutcomes {
    /// Processed.
    pub handled: u64,
    /// Turned away with an answer (cookie, no proposal, ...).
    pub refused: u64,
    /// Dropped without effect.
    pub dropped: u64,
}

/// The text of the `ike:` section of `status`.
fn format_ike(o: &mut String, ike: &IkeStatus) {
    let _ = writeln!(
        o,
        "\nike: {} half-open, {} blocked sources, cookies {} sent / {} verified, {} half-open expired",
        ike.half_open, ike.blocked_sources, ike.cookies_sent, ike.cookies_verified, ike.half_open_expired
    );
    let drops: Vec<String> = ike
        .init_dropped
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(o, "  IKE_SA_INIT dropped: {}", drops.join(", "));
    let recv: Vec<String> = ike
        .received
        .iter()
        .map(|(k, v)| format!("{k} {}/{}/{}", v.handled, v.refused, v.dropped))
        .collect();
    let _ = writeln!(
        o,
        "  received (handled/refused/dropped): {}; unparsable {}",
        recv.join(", "),
        ike.received_unparsable
    );
}

/// Tunnel state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TunnelState {
    /// No IKE SA.
    Down,
    /// IKE negotiation in progress.
    Connecting,
    /// IKE and CHILD SA up.
    Established,
    /// Established, a rekey is in progress.
    Rekeying,
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelState::Down => "down",
            TunnelState::Connecting => "connecting",
            TunnelState::Established => "established",
            TunnelState::Rekeying => "rekeying",
        })
    }
}

/// Role of a tunnel in an active/standby pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TunnelRole {
    /// Carries traffic.
    Active,
    /// Kept up, carries no traffic.
    Standby,
}

impl fmt::Display for TunnelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelRole::Active => "active",
            TunnelRole::Standby => "standby",
        })
    }
}

/// Status of one tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Configured name.
    pub name: String,
    /// Current state.
    pub state: TunnelState,
    /// Active or standby.
    pub role: TunnelRole,
    /// Local outer address.
    pub local_addr: IpAddr,
    /// Remote outer address.
    pub remote_addr: IpAddr,
    /// The tunnel's interface (a TUN; route-based tunnels may share one).
    #[serde(default)]
    pub interface: String,
    /// Route-based: whether the engine asks for the interface's carrier
    /// (on while a Child SA and a live peer exist); `None` for a
    /// policy-based tunnel, whose interface always has carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// Negotiated IKE algorithms (e.g. `aes128gcm16-prfsha256-modp2048`).
    pub ike_algorithms: Option<String>,
    /// Negotiated ESP algorithms.
    pub esp_algorithms: Option<String>,
    /// Initiator SPI of the established IKE SA, `0x` and 16 hex digits (a
    /// string: JSON readers that use doubles would round a 64-bit number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_spi_i: Option<String>,
    /// Responder SPI of the established IKE SA, like `ike_spi_i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_spi_r: Option<String>,
    /// Inbound SPI of the current CHILD SA.
    pub spi_in: Option<u32>,
    /// Outbound SPI.
    pub spi_out: Option<u32>,
    /// Inner bytes received (decrypted).
    pub bytes_in: u64,
    /// Inner bytes sent (encrypted).
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Dropped packets by reason.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Seconds since the last rekey.
    pub last_rekey_secs: Option<u64>,
    /// Seconds until the current Child SA's scheduled rekey.
    pub next_rekey_secs: Option<u64>,
    /// Child SA rekeys completed (outbound switched to the new SA).
    #[serde(default)]
    pub child_rekeys: u64,
    /// IKE SA rekeys completed.
    #[serde(default)]
    pub ike_rekeys: u64,
    /// Times DPD declared the peer of an established IKE SA dead.
    #[serde(default)]
    pub dpd_failures: u64,
    /// Seconds since the IKE SA came up (absent while down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_secs: Option<u64>,
    /// The last failure (authentication, refused proposal, dead peer,
    /// keyingtries used up), cleared when the IKE SA comes up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Errors of the control protocol.
#[derive(Debug)]
#[non_exhaustive]
pub enum ControlError {
    /// Could not connect to the socket.
    Connect(io::Error),
    /// Read/write failed.
    Io(io::Error),
    /// No answer within the timeout.
    Timeout,
    /// Request line longer than [`MAX_REQUEST_LEN`].
    TooLong,
    /// Not valid JSON, or not a known request/response.
    Json(serde_json::Error),
    /// The connection closed before a full line arrived.
    Closed,
    /// The server answered with an error.
    Server(String),
    /// Socket path exists and is not a socket, or a server is running.
    InUse(PathBuf),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Connect(e) => write!(f, "cannot connect to control socket: {e}"),
            ControlError::Io(e) => write!(f, "control socket I/O: {e}"),
            ControlError::Timeout => f.write_str("control socket: no answer in time"),
            ControlError::TooLong => f.write_str("control message too long"),
            ControlError::Json(e) => write!(f, "control message: {e}"),
            ControlError::Closed => f.write_str("control socket closed by peer"),
            ControlError::Server(e) => write!(f, "server error: {e}"),
            ControlError::InUse(p) => write!(
                f,
                "{} is in use (another instance, or not a socket)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ControlError {}

/// Parse one request line (without its newline). Never panics.
pub fn parse_request(line: &[u8]) -> Result<Request, ControlError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(ControlError::TooLong);
    }
    serde_json::from_slice(line).map_err(ControlError::Json)
}

struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Close once `wbuf` is flushed.
    closing: bool,
}

/// Non-blocking control socket server.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Option<Conn>>,
    base: Token,
    /// Owner uid allowed besides root (the server's effective uid).
    euid: u32,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients())
            .finish()
    }
}

impl ControlServer {
    /// Create the socket at `path` with mode 0600. A stale socket file (no
    /// server answering) is replaced; a live one or a non-socket file is an
    /// error.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => {
                if !md.file_type().is_socket() {
                    return Err(ControlError::InUse(path.into()));
                }
                match UnixStream::connect(path) {
                    Ok(_) => return Err(ControlError::InUse(path.into())),
                    Err(_) => std::fs::remove_file(path).map_err(ControlError::Io)?,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControlError::Io(e)),
        }
        let listener = UnixListener::bind(path).map_err(ControlError::Io)?;
        // The file is created with 0777 & ~umask; with the usual umask (022)
        // nobody but the owner can connect (connect needs write permission)
        // even before this chmod, and peers are also checked by SO_PEERCRED.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(ControlError::Io)?;
        listener.set_nonblocking(true).map_err(ControlError::Io)?;
        let euid = cred::effective_uid();
        Ok(ControlServer {
            listener,
            path: path.into(),
            conns: (0..MAX_CLIENTS).map(|_| None).collect(),
            base: Token(0),
            euid,
        })
    }

    /// Socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// Register the listener with `poller`; the server uses tokens
    /// `base ..= base + MAX_CLIENTS` (see [`TOKEN_SPAN`]).
    pub fn register(&mut self, poller: &Poller, base: Token) -> io::Result<()> {
        self.base = base;
        poller.add(&self.listener, base, Interest::READABLE)
    }

    /// `true` if `token` belongs to this server.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base.0 && token.0 < self.base.0 + TOKEN_SPAN
    }

    /// Handle a readiness event for one of this server's tokens: accept
    /// clients, read requests, answer each through `handler`, flush.
    pub fn handle(
        &mut self,
        poller: &Poller,
        ev: Event,
        handler: &mut dyn FnMut(&Request) -> Response,
    ) {
        if ev.token == self.base {
            self.accept_all(poller);
            return;
        }
        let Some(idx) = ev.token.0.checked_sub(self.base.0 + 1).map(|i| i as usize) else {
            return;
        };
        if idx >= self.conns.len() {
            return;
        }
        let keep = match self.conns[idx].as_mut() {
            Some(c) => Self::service(c, ev, handler),
            None => return,
        };
        let token = ev.token;
        match keep {
            Some(want_write) => {
                if let Some(c) = &self.conns[idx] {
                    let interest = if want_write {
                        Interest::BOTH
                    } else {
                        Interest::READABLE
                    };
                    if poller.modify(&c.stream, token, interest).is_err() {
                        self.close(poller, idx);
                    }
                }
            }
            None => self.close(poller, idx),
        }
    }

    fn accept_all(&mut self, poller: &Poller) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock, or a transient accept error
            };
            let allowed = cred::peer_uid(&stream)
                .map(|u| u == 0 || u == self.euid)
                .unwrap_or(false);
            if !allowed || stream.set_nonblocking(true).is_err() {
                continue; // dropped: closed
            }
            let Some(idx) = self.conns.iter().position(|c| c.is_none()) else {
                continue; // full: closed
            };
            let token = Token(self.base.0 + 1 + idx as u64);
            if poller.add(&stream, token, Interest::READABLE).is_err() {
                continue;
            }
            self.conns[idx] = Some(Conn {
                stream,
                rbuf: Vec::with_capacity(256),
                wbuf: Vec::new(),
                wpos: 0,
                closing: false,
            });
        }
    }

    /// Returns `None` to close, `Some(want_write)` to keep.
    fn service(
        c: &mut Conn,
        ev: Event,
        handler: &mut dyn FnMut(&Request) -> Response,
    ) -> Option<bool> {
        if ev.readable && !c.closing {
            let mut tmp = [0u8; 1024];
            loop {
                match c.stream.read(&mut tmp) {
                    Ok(0) => {
                        c.closing = true;
                        break;
                    }
                    Ok(n) => c.rbuf.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return None,
                }
                if c.rbuf.len() > MAX_REQUEST_LEN + 1 && !c.rbuf.contains(&b'\n') {
                    break;
                }
            }
            let mut start = 0;
            while let Some(nl) = c.rbuf[start..].iter().position(|&b| b == b'\n') {
                let line = &c.rbuf[start..start + nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let resp = match parse_request(line) {
                    Ok(req) => handler(&req),
                    Err(e) => Response::error(e.to_string()),
                };
                // serializing plain data types cannot fail
                if serde_json::to_writer(&mut c.wbuf, &resp).is_err() {
                    return None;
                }
                c.wbuf.push(b'\n');
                start += nl + 1;
            }
            c.rbuf.drain(..start);
            if c.rbuf.len() > MAX_REQUEST_LEN {
                let _ = serde_json::to_writer(
                    &mut c.wbuf,
                    &Response::error(ControlError::TooLong.to_string()),
                );
                c.wbuf.push(b'\n');
                c.rbuf.clear();
                c.closing = true;
            }
        }
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return None,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(true),
                Err(_) => return None,
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.closing {
            None
        } else {
            Some(false)
        }
    }

    fn close(&mut self, poller: &Poller, idx: usize) {
        if let Some(c) = self.conns[idx].take() {
            let _ = poller.delete(&c.stream);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Send `req` to the server at `path` and wait (at most `timeout`) for the
/// answer line.
pub fn query(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let mut s = UnixStream::connect(path).map_err(ControlError::Connect)?;
    s.set_read_timeout(Some(timeout))
        .map_err(ControlError::Io)?;
    s.set_write_timeout(Some(timeout))
        .map_err(ControlError::Io)?;
    let mut line = serde_json::to_vec(req).map_err(ControlError::Json)?;
    line.push(b'\n');
    s.write_all(&line).map_err(ControlError::Io)?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return Err(ControlError::Closed),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ControlError::Timeout)
            }
            Err(e) => return Err(ControlError::Io(e)),
        }
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            return serde_json::from_slice(&buf[..nl]).map_err(ControlError::Json);
        }
        if buf.len() > 16 << 20 {
            return Err(ControlError::TooLong);
        }
    }
}

/// What `tun-bridge initiate|terminate|reload` prints on success: the
/// server's message or the reload report. A refused command (unknown name,
/// a configuration error on reload) is [`ControlError::Server`] with the
/// server's text (for a reload: the `file:line` errors, one per line).
pub fn command_text(path: &Path, req: &Request, timeout: Duration) -> Result<String, ControlError> {
    let r = query(path, req, timeout)?;
    if !r.ok {
        return Err(ControlError::Server(
            r.error.unwrap_or_else(|| "unknown error".into()),
        ));
    }
    match (r.reload, r.message) {
        (Some(rep), _) => Ok(rep.to_string()),
        (None, Some(m)) => Ok(format!("{m}\n")),
        (None, None) => Err(ControlError::Server("answer without a result".into())),
    }
}

/// What `tun-bridge status [--json]` prints: the pretty table, or the
/// status document as pretty-printed JSON.
pub fn status_text(path: &Path, json: bool, timeout: Duration) -> Result<String, ControlError> {
    let r = query(path, &Request::Status, timeout)?;
    if !r.ok {
        return Err(ControlError::Server(
            r.error.unwrap_or_else(|| "unknown error".into()),
        ));
    }
    let st = r
        .status
        .ok_or(ControlError::Server("answer without status".into()))?;
    if json {
        let mut s = serde_json::to_string_pretty(&st).map_err(ControlError::Json)?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(format_status(&st))
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn human_secs(s: u64) -> String {
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        let _ = write!(out, "{d}d");
    }
    if d > 0 || h > 0 {
        let _ = write!(out, "{h}h");
    }
    if d > 0 || h > 0 || m > 0 {
        let _ = write!(out, "{m:02}m");
    }
    let _ = write!(out, "{sec:02}s");
    out
}

/// Human-readable status in the style of `wg show`.
pub fn format_status(st: &StatusReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "tun-bridge {}  pid {}  up {}",
        st.version,
        st.pid,
        human_secs(st.uptime_secs)
    );
    if st.tunnels.is_empty() {
        o.push_str("\n(no tunnels)\n");
    }
    for t in &st.tunnels {
        let _ = writeln!(o, "\ntunnel: {} ({})", t.name, t.role);
        let _ = writeln!(o, "  state: {}", t.state);
        let _ = writeln!(o, "  endpoints: {} -> {}", t.local_addr, t.remote_addr);
        match t.carrier {
            Some(on) => {
                let c = if on { "up" } else { "down" };
                let _ = writeln!(o, "  interface: {} (route-based, carrier {c})", t.interface);
            }
            None if !t.interface.is_empty() => {
                let _ = writeln!(o, "  interface: {}", t.interface);
            }
            None => {}
        }
        let _ = writeln!(o, "  ike: {}", t.ike_algorithms.as_deref().unwrap_or("-"));
        if let (Some(i), Some(r)) = (&t.ike_spi_i, &t.ike_spi_r) {
            let _ = writeln!(o, "  ike spi: i {i}  r {r}");
        }
        let _ = writeln!(o, "  esp: {}", t.esp_algorithms.as_deref().unwrap_or("-"));
        let spi = |s: Option<u32>| s.map_or_else(|| "-".to_string(), |v| format!("0x{v:08x}"));
        let _ = writeln!(o, "  spi: in {}  out {}", spi(t.spi_in), spi(t.spi_out));
        let _ = writeln!(
            o,
            "  transfer: {} received ({} packets), {} sent ({} packets)",
            human_bytes(t.bytes_in),
            t.packets_in,
            human_bytes(t.bytes_out),
            t.packets_out
        );
        if !t.drops.is_empty() {
            let d: Vec<String> = t.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(o, "  drops: {}", d.join(", "));
        }
        let last = t
            .last_rekey_secs
            .map_or("never".into(), |s| format!("{} ago", human_secs(s)));
        let next = t
            .next_rekey_secs
            .map_or("-".into(), |s| format!("in {}", human_secs(s)));
        let _ = writeln!(
            o,
            "  rekey: last {last}, next {next} ({} child rekeys)",
            t.child_rekeys
        );
        if let Some(e) = &t.last_error {
            let _ = writeln!(o, "  last error: {e}");
        }
    }
    format_ike(&mut o, &st.ike);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            uptime_secs: 3723,
            tunnels: vec![TunnelStatus {
                name: "aws-1".into(),
                state: TunnelState::Established,
                role: TunnelRole::Active,
                local_addr: "198.51.100.2".parse().unwrap(),
                remote_addr: "198.51.100.1".parse().unwrap(),
                interface: "ipsec1".into(),
                carrier: Some(true),
                ike_algorithms: Some("AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048".into()),
                esp_algorithms: Some("AES_GCM_16-128".into()),
                ike_spi_i: Some("0x0123456789abcdef".into()),
                ike_spi_r: Some("0xfedcba9876543210".into()),
                spi_in: Some(0xc123_4567),
                spi_out: Some(0x89ab_cdef),
                bytes_in: 1_258_291,
                bytes_out: 3481,
                packets_in: 1234,
                packets_out: 12,
                drops: [("replay".to_string(), 3), ("auth".to_string(), 1)]
                    .into_iter()
                    .collect(),
                last_rekey_secs: Some(120),
                next_rekey_secs: Some(3480),
                child_rekeys: 2,
                ike_rekeys: 1,
                dpd_failures: 0,
                established_secs: Some(600),
                last_error: None,
            }],
            ike: IkeStatus::default(),
        }
    }

    #[test]
    fn request_wire_format() {
        assert_eq!(
            parse_request(br#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            parse_request(br#"{"cmd":"initiate","name":"Tunnel1"}"#).unwrap(),
            Request::Initiate {
                name: "Tunnel1".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Terminate { name: "x".into() }).unwrap(),
            r#"{"cmd":"terminate","name":"x"}"#
        );
        assert_eq!(
            parse_request(br#"{"cmd":"reload"}"#).unwrap(),
            Request::Reload
        );
        assert!(matches!(
            parse_request(br#"{"cmd":"initiate"}"#),
            Err(ControlError::Json(_))
        ));
        assert!(matches!(
            parse_request(br#"{"cmd":"reboot"}"#),
            Err(ControlError::Json(_))
        ));
        assert!(matches!(
            parse_request(b"not json"),
            Err(ControlError::Json(_))
        ));
        assert!(matches!(
            parse_request(&[b' '; 5000]),
            Err(ControlError::TooLong)
        ));
    }

    #[test]
    fn status_roundtrip_and_field_names() {
        let r = Response::status(sample());
        let s = serde_json::to_string(&r).unwrap();
        for key in [
            r#""ok":true"#,
            r#""state":"established""#,
            r#""role":"active""#,
            r#""spi_in":3240314215"#,
            r#""ike_spi_i":"0x0123456789abcdef""#,
            r#""drops":{"auth":1,"replay":3}"#,
            r#""next_rekey_secs":3480"#,
        ] {
            assert!(s.contains(key), "{key} missing in {s}");
        }
        assert!(!s.contains("\"error\""));
        let back: Response = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
        let e = serde_json::to_string(&Response::error("nope")).unwrap();
        assert_eq!(e, r#"{"ok":false,"error":"nope"}"#);
    }

    #[test]
    fn reload_report_text_and_wire() {
        let r = ReloadReport {
            kept: vec!["a".into(), "b".into()],
            changed: vec![ChangedConn {
                name: "c".into(),
                how: "child rekey".into(),
                settings: vec!["esp".into()],
            }],
            added: vec![],
            removed: vec!["d".into()],
        };
        assert_eq!(
            r.to_string(),
            "kept: a, b\nchanged: c (child rekey: esp)\nadded: -\nremoved: d\n"
        );
        let s = serde_json::to_string(&Response::reloaded(r.clone())).unwrap();
        assert!(
            s.starts_with(r#"{"ok":true,"reload":{"kept":["a","b"]"#),
            "{s}"
        );
        let back: Response = serde_json::from_str(&s).unwrap();
        assert_eq!(back.reload, Some(r));
        let d = serde_json::to_string(&Response::done("initiating t")).unwrap();
        assert_eq!(d, r#"{"ok":true,"message":"initiating t"}"#);
    }

    #[test]
    fn pretty_table() {
        let t = format_status(&sample());
        assert!(
            t.starts_with("tun-bridge 0.1.0  pid 42  up 1h02m03s\n"),
            "{t}"
        );
        assert!(t.contains("tunnel: aws-1 (active)"));
        assert!(t.contains("endpoints: 198.51.100.2 -> 198.51.100.1"));
        assert!(t.contains("interface: ipsec1 (route-based, carrier up)"));
        assert!(t.contains("spi: in 0xc1234567  out 0x89abcdef"));
        assert!(
            t.contains("ike spi: i 0x0123456789abcdef  r 0xfedcba9876543210"),
            "{t}"
        );
        assert!(
            t.contains("transfer: 1.20 MiB received (1234 packets), 3.40 KiB sent (12 packets)"),
            "{t}"
        );
        assert!(t.contains("drops: auth 1, replay 3"));
        assert!(t.contains("rekey: last 02m00s ago, next in 58m00s"), "{t}");
        let empty = StatusReport {
            tunnels: vec![],
            ..sample()
        };
        assert!(format_status(&empty).contains("(no tunnels)"));
    }
}
