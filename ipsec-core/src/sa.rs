//! ESP security associations: parameters, lifetimes, counters, and the
//! per-packet tunnel-mode encapsulation and decapsulation (RFC 4303).
//!
//! An SA is one direction. [`OutboundSa`] and [`InboundSa`] process packets
//! through `&self` (atomic sequence number and counters, a lock-free replay
//! window) so an SA can be shared across threads behind an `Arc`.
//! Buffers belong to the caller; nothing here allocates per packet.

use core::fmt;
use core::net::IpAddr;
use core::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::{Cipher, CryptoError, Suite};
use crate::replay::{ReplayError, ReplayWindow, DEFAULT_WINDOW};
pub use crate::secret::SecretBytes;
use crate::selector::{SelectorError, TrafficSelector};
use crate::spd::TunnelId;
use crate::wire::{esp, EspTrailer, FlowKey, IpProtocol, WireError};

/// One set of limits; `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Inner (plaintext) bytes processed.
    pub bytes: Option<u64>,
    /// Packets processed.
    pub packets: Option<u64>,
    /// Time since installation.
    pub time: Option<Duration>,
}

/// Soft and hard lifetimes (RFC 4301 §4.4.2.1). Reaching a soft limit raises
/// [`Expiry::Soft`] once (time to rekey); reaching a hard limit raises
/// [`Expiry::Hard`] once and the SA refuses every further packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Soft limits.
    pub soft: Limits,
    /// Hard limits.
    pub hard: Limits,
}

/// Which lifetime limit was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// A soft limit: rekey now, the SA keeps working.
    Soft,
    /// A hard limit (or sequence number exhaustion): the SA is dead.
    Hard,
}

/// Outer addresses of an ESP tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TunnelEndpoints {
    /// Our outer address.
    pub local: IpAddr,
    /// The peer's outer address.
    pub remote: IpAddr,
}

/// UDP encapsulation (RFC 3948) ports, when NAT traversal is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    /// Our UDP port (normally 4500).
    pub local_port: u16,
    /// The peer's UDP port (4500, or whatever a NAT mapped it to).
    pub remote_port: u16,
}

/// Everything needed to install one direction of a Child SA. The IKE layer
/// fills this from the negotiated proposal, KEYMAT and traffic selectors.
#[derive(Clone, Debug)]
pub struct SaParams {
    /// SPI carried in the ESP header (chosen by the receiver of this SA).
    pub spi: u32,
    /// Encryption and integrity algorithms.
    pub suite: Suite,
    /// Encryption key (for AES-GCM including the 4-byte salt).
    pub enc_key: SecretBytes,
    /// Integrity key (empty for AES-GCM).
    pub integ_key: SecretBytes,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
    /// Anti-replay window size, 32..=4096 (inbound SAs only).
    pub replay_window: u32,
    /// Soft and hard lifetimes.
    pub lifetime: Lifetime,
    /// Local-side traffic selectors (inner source outbound, destination inbound).
    pub local_ts: Vec<TrafficSelector>,
    /// Remote-side traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Outer tunnel addresses.
    pub tunnel: TunnelEndpoints,
    /// UDP encapsulation ports, or `None` for raw ESP (IP protocol 50).
    pub udp_encap: Option<UdpEncap>,
    /// The tunnel (interface) this SA belongs to: inbound, the tunnel that
    /// receives what it decrypts; outbound, the tunnel of the policies it
    /// may be bound to.
    pub tunnel_id: TunnelId,
}

impl SaParams {
    /// Parameters with defaults: no ESN, a 1024-packet replay window, no
    /// lifetimes, no UDP encapsulation, "any" selectors of the tunnel's
    /// family on both sides, and tunnel id 0 (set `tunnel_id` when the data
    /// path serves more than one tunnel).
    pub fn new(
        spi: u32,
        suite: Suite,
        enc_key: SecretBytes,
        integ_key: SecretBytes,
        tunnel: TunnelEndpoints,
    ) -> SaParams {
        let any = match tunnel.remote {
            IpAddr::V4(_) => TrafficSelector::any_v4(),
            IpAddr::V6(_) => TrafficSelector::any_v6(),
        };
        SaParams {
            spi,
            suite,
            enc_key,
            integ_key,
            esn: false,
            replay_window: DEFAULT_WINDOW,
            lifetime: Lifetime::default(),
            local_ts: vec![any],
            remote_ts: vec![any],
            tunnel,
            udp_encap: None,
            tunnel_id: TunnelId::default(),
        }
    }
}

/// Why an SA could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaError {
    /// The suite or key material was refused by the crypto provider.
    Crypto(CryptoError),
    /// The replay window size is outside 32..=4096.
    BadReplayWindow,
    /// A traffic selector is malformed.
    BadSelector(SelectorError),
    /// An inbound SA needs at least one selector on each side.
    NoSelectors,
    /// The tunnel endpoints are of different address families.
    MixedTunnelFamilies,
    /// SPIs 0..=255 are reserved (RFC 4303 §2.1).
    ReservedSpi,
    /// The SPI is already installed (SAD).
    DuplicateSpi,
    /// The policy to bind an outbound SA to is not in the SPD.
    UnknownPolicy,
    /// The SA's tunnel is not the tunnel of the policy it is bound to.
    TunnelMismatch,
}

impl fmt::Display for SaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaError::Crypto(e) => write!(f, "crypto: {e}"),
            SaError::BadReplayWindow => f.write_str("replay window not in 32..=4096"),
            SaError::BadSelector(e) => write!(f, "traffic selector: {e}"),
            SaError::NoSelectors => f.write_str("no traffic selectors"),
            SaError::MixedTunnelFamilies => f.write_str("tunnel endpoints mix IPv4 and IPv6"),
            SaError::ReservedSpi => f.write_str("SPI in the reserved range 0..=255"),
            SaError::DuplicateSpi => f.write_str("SPI already installed"),
            SaError::UnknownPolicy => f.write_str("no such policy"),
            SaError::TunnelMismatch => f.write_str("SA and policy belong to different tunnels"),
        }
    }
}

impl std::error::Error for SaError {}

impl From<CryptoError> for SaError {
    fn from(e: CryptoError) -> SaError {
        SaError::Crypto(e)
    }
}

/// Why a packet was dropped. Each SA (and the data path, for drops that
/// happen before an SA is known) counts drops per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Too short for the ESP header, IV, trailer and ICV (or an empty/short
    /// UDP/4500 payload).
    Truncated,
    /// Ciphertext length not a multiple of the cipher block.
    BadLength,
    /// No inbound SA with this SPI.
    UnknownSpi,
    /// The ICV did not verify.
    AuthFailed,
    /// Pad length out of range or padding bytes not 1, 2, 3, ...
    BadPadding,
    /// Sequence number already received.
    Replayed,
    /// Sequence number left of the replay window.
    TooOld,
    /// The inner packet does not match the SA's traffic selectors.
    SelectorMismatch,
    /// Inner IP version disagrees with the ESP next header.
    WrongInnerVersion,
    /// Inner packet malformed (bad header, length disagrees with payload).
    BadInnerPacket,
    /// ESP next header is neither IPv4 (4) nor IPv6 (41).
    UnsupportedNextHeader,
    /// A dummy packet (next header 59, RFC 4303 §2.6), discarded silently.
    DummyPacket,
    /// The SA reached a hard lifetime.
    SaExpired,
    /// The outbound sequence number space is exhausted (the SA is now hard
    /// expired; sequence numbers never wrap).
    SeqExhausted,
    /// No SPD policy matches the packet.
    NoPolicy,
    /// The matching policy says DISCARD.
    PolicyDiscard,
    /// PROTECT policy without an SA yet (an ACQUIRE was or will be raised).
    NoSa,
    /// Not enough headroom or tailroom in the caller's buffer.
    BufferTooSmall,
    /// The crypto provider refused the operation (should not happen with
    /// buffers sized by this crate).
    CryptoFailure,
}

impl DropReason {
    /// Number of variants (size of a per-reason counter array).
    pub const COUNT: usize = 19;
    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::UnknownSpi,
        DropReason::AuthFailed,
        DropReason::BadPadding,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::SelectorMismatch,
        DropReason::WrongInnerVersion,
        DropReason::BadInnerPacket,
        DropReason::UnsupportedNextHeader,
        DropReason::DummyPacket,
        DropReason::SaExpired,
        DropReason::SeqExhausted,
        DropReason::NoPolicy,
        DropReason::PolicyDiscard,
        DropReason::NoSa,
        DropReason::BufferTooSmall,
        DropReason::CryptoFailure,
    ];

    /// Index of this reason in a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<ReplayError> for DropReason {
    fn from(e: ReplayError) -> DropReason {
        match e {
            ReplayError::Replayed => DropReason::Replayed,
            ReplayError::TooOld => DropReason::TooOld,
        }
    }
}

/// Live counters of one SA (or of a whole data path), readable while
/// traffic flows.
///
/// Counting a packet is a single atomic add: packets and bytes share one
/// 64-bit word (`packets << 40 | bytes`) that is folded into 64-bit totals
/// every 2^20 packets or 2^36 bytes. Readers ([`Counters::snapshot`], the
/// totals [`Counters::count_packet`] returns) see exact, consistent values:
/// a fold is bracketed by `folds_begun`/`folds_ended` and a reader that
/// overlapped one retries, seqlock-style.
#[derive(Default)]
pub struct Counters {
    /// Packets (high 24 bits) and bytes (low 40 bits) since the last fold.
    recent: AtomicU64,
    /// Folded packet total.
    base_packets: AtomicU64,
    /// Folded byte total.
    base_bytes: AtomicU64,
    /// Folds started.
    folds_begun: AtomicU64,
    /// Folds finished.
    folds_ended: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Counters")
            .field("packets", &s.packets)
            .field("bytes", &s.bytes)
            .field("drops", &s.drops)
            .finish()
    }
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets successfully processed.
    pub packets: u64,
    /// Inner (plaintext) bytes successfully processed.
    pub bytes: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl Stats {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Sum of all drops.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds `other`'s counts to these (saturating).
    pub fn add(&mut self, other: &Stats) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a = a.saturating_add(b);
        }
    }
}

/// Bit position of the packet count in `Counters::recent`.
const PACKET_SHIFT: u32 = 40;
const RECENT_BYTES: u64 = (1 << PACKET_SHIFT) - 1;
/// Fold once this many packets or bytes are in `recent`, far below the field
/// widths (2^24 packets, 2^40 bytes). Every add that lands at or over a
/// threshold folds before returning, so each thread has at most one add
/// outstanding past it: `recent` could only overflow with millions of
/// threads stalled inside `count`.
const FOLD_PACKETS: u64 = 1 << 20;
const FOLD_BYTES: u64 = 1 << 36;
/// Larger packets bypass `recent` (which admits at most 2^16 bytes per add).
const MAX_RECENT_LEN: u64 = 0xffff;

impl Counters {
    /// Counts one processed packet of `bytes` inner bytes; returns the new
    /// packet and byte totals.
    #[inline]
    pub fn count_packet(&self, bytes: usize) -> (u64, u64) {
        self.count(bytes, true)
    }

    /// Counts one packet; returns the totals only if `totals` is set (they
    /// are then exact and include this packet). One atomic add on the fast
    /// path.
    #[inline(always)]
    pub(crate) fn count(&self, bytes: usize, totals: bool) -> (u64, u64) {
        let len = bytes as u64;
        if len > MAX_RECENT_LEN {
            return self.fold_in(1, len);
        }
        // All orderings are SeqCst: the fold protocol relies on one total
        // order, and on x86-64 SeqCst loads cost the same as plain ones.
        let ended = if totals {
            self.folds_ended.load(Ordering::SeqCst)
        } else {
            0
        };
        let add = (1 << PACKET_SHIFT) | len;
        let v = self
            .recent
            .fetch_add(add, Ordering::SeqCst)
            .wrapping_add(add);
        let (p, b) = (v >> PACKET_SHIFT, v & RECENT_BYTES);
        if p >= FOLD_PACKETS || b >= FOLD_BYTES {
            return self.fold_in(0, 0);
        }
        if !totals {
            return (0, 0);
        }
        let bp = self.base_packets.load(Ordering::SeqCst);
        let bb = self.base_bytes.load(Ordering::SeqCst);
        // No fold overlapped: `v` and the bases belong together.
        if self.folds_begun.load(Ordering::SeqCst) == ended {
            (bp + p, bb + b)
        } else {
            self.totals()
        }
    }

    /// Moves `recent` into the bases (plus `packets`/`bytes` counted
    /// directly); returns consistent totals afterwards.
    #[cold]
    fn fold_in(&self, packets: u64, bytes: u64) -> (u64, u64) {
        self.folds_begun.fetch_add(1, Ordering::SeqCst);
        let v = self.recent.swap(0, Ordering::SeqCst);
        self.base_packets
            .fetch_add((v >> PACKET_SHIFT) + packets, Ordering::SeqCst);
        self.base_bytes
            .fetch_add((v & RECENT_BYTES) + bytes, Ordering::SeqCst);
        self.folds_ended.fetch_add(1, Ordering::SeqCst);
        self.totals()
    }

    /// Consistent packet and byte totals: retried while a fold is in
    /// progress (a fold is a handful of instructions, so this is brief).
    fn totals(&self) -> (u64, u64) {
        let mut spins = 0u32;
        loop {
            let ended = self.folds_ended.load(Ordering::SeqCst);
            let v = self.recent.load(Ordering::SeqCst);
            let bp = self.base_packets.load(Ordering::SeqCst);
            let bb = self.base_bytes.load(Ordering::SeqCst);
            if self.folds_begun.load(Ordering::SeqCst) == ended {
                return (bp + (v >> PACKET_SHIFT), bb + (v & RECENT_BYTES));
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Counts one drop.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> Stats {
        let (packets, bytes) = self.totals();
        let mut s = Stats {
            packets,
            bytes,
            drops: [0; DropReason::COUNT],
        };
        for (d, c) in s.drops.iter_mut().zip(&self.drops) {
            *d = c.load(Ordering::Relaxed);
        }
        s
    }
}

/// Lifetime bookkeeping shared by both directions.
#[derive(Debug)]
struct LifetimeState {
    lifetime: Lifetime,
    /// Any packet or byte limit set (else counting needs no totals).
    volume_limits: bool,
    /// Any time limit set (else `check_time` needs no clock arithmetic).
    time_limits: bool,
    installed: Instant,
    soft_fired: AtomicBool,
    hard_fired: AtomicBool,
}

fn reached(limit: Option<u64>, v: u64) -> bool {
    limit.is_some_and(|l| v >= l)
}

fn time_reached(limit: Option<Duration>, age: Duration) -> bool {
    limit.is_some_and(|l| age >= l)
}

impl LifetimeState {
    fn new(lifetime: Lifetime, installed: Instant) -> Self {
        let l = [lifetime.soft, lifetime.hard];
        LifetimeState {
            lifetime,
            volume_limits: l.iter().any(|l| l.packets.is_some() || l.bytes.is_some()),
            time_limits: l.iter().any(|l| l.time.is_some()),
            installed,
            soft_fired: AtomicBool::new(false),
            hard_fired: AtomicBool::new(false),
        }
    }

    #[inline]
    fn is_dead(&self) -> bool {
        self.hard_fired.load(Ordering::Relaxed)
    }

    /// Marks the SA hard-expired; returns the event if this call did it.
    fn kill(&self) -> Option<Expiry> {
        (!self.hard_fired.swap(true, Ordering::AcqRel)).then_some(Expiry::Hard)
    }

    fn soften(&self) -> Option<Expiry> {
        (!self.soft_fired.swap(true, Ordering::AcqRel)).then_some(Expiry::Soft)
    }

    /// Time check before processing; returns (dead, event).
    #[inline]
    fn check_time(&self, now: Instant) -> (bool, Option<Expiry>) {
        if self.is_dead() {
            return (true, None);
        }
        if !self.time_limits {
            return (false, None);
        }
        let (soft, hard) = (self.lifetime.soft.time, self.lifetime.hard.time);
        let age = now.saturating_duration_since(self.installed);
        if time_reached(hard, age) {
            return (true, self.kill());
        }
        if time_reached(soft, age) && !self.soft_fired.load(Ordering::Relaxed) {
            return (false, self.soften());
        }
        (false, None)
    }

    /// Counts a processed packet and runs the volume check.
    #[inline]
    fn count(&self, counters: &Counters, inner_len: usize) -> Option<Expiry> {
        if !self.volume_limits {
            counters.count(inner_len, false);
            return None;
        }
        let (p, b) = counters.count(inner_len, true);
        self.after_packet(p, b)
    }

    /// Volume check after a packet was counted.
    #[inline]
    fn after_packet(&self, packets: u64, bytes: u64) -> Option<Expiry> {
        let h = &self.lifetime.hard;
        if reached(h.packets, packets) || reached(h.bytes, bytes) {
            return self.kill();
        }
        let s = &self.lifetime.soft;
        if (reached(s.packets, packets) || reached(s.bytes, bytes))
            && !self.soft_fired.load(Ordering::Relaxed)
        {
            return self.soften();
        }
        None
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.is_dead() {
            return None;
        }
        let soft = if self.soft_fired.load(Ordering::Relaxed) {
            None
        } else {
            self.lifetime.soft.time
        };
        [soft, self.lifetime.hard.time]
            .into_iter()
            .flatten()
            // A lifetime past the clock's range never fires (`+` would panic).
            .filter_map(|d| self.installed.checked_add(d))
            .min()
    }
}

/// State both directions of an SA hold, embedded by value (no extra
/// indirection on the per-packet path) in [`OutboundSa`] and [`InboundSa`].
struct SaCommon {
    spi: u32,
    esn: bool,
    cipher: Box<dyn Cipher>,
    iv_len: usize,
    icv_len: usize,
    block_len: usize,
    tunnel: TunnelEndpoints,
    udp_encap: Option<UdpEncap>,
    tunnel_id: TunnelId,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    life: LifetimeState,
    counters: Counters,
}

impl SaCommon {
    /// Validates the checks both directions share and sets up the state.
    fn new(p: &SaParams, cipher: Box<dyn Cipher>, now: Instant) -> Result<SaCommon, SaError> {
        if p.spi <= 255 {
            return Err(SaError::ReservedSpi);
        }
        if p.tunnel.local.is_ipv4() != p.tunnel.remote.is_ipv4() {
            return Err(SaError::MixedTunnelFamilies);
        }
        for ts in p.local_ts.iter().chain(&p.remote_ts) {
            ts.validate().map_err(SaError::BadSelector)?;
        }
        Ok(SaCommon {
            spi: p.spi,
            esn: p.esn,
            iv_len: cipher.iv_len(),
            icv_len: cipher.icv_len(),
            block_len: cipher.block_len(),
            cipher,
            tunnel: p.tunnel,
            udp_encap: p.udp_encap,
            tunnel_id: p.tunnel_id,
            local_ts: p.local_ts.clone(),
            remote_ts: p.remote_ts.clone(),
            life: LifetimeState::new(p.lifetime, now),
            counters: Counters::default(),
        })
    }
}

/// The public accessors both SA types share, written once: expands inside
/// the `impl` of a type that embeds an [`SaCommon`] as `common`.
macro_rules! sa_common_accessors {
    () => {
        /// The SPI.
        pub fn spi(&self) -> u32 {
            self.common.spi
        }

        /// The suite.
        pub fn suite(&self) -> Suite {
            self.common.cipher.suite()
        }

        /// Outer addresses.
        pub fn tunnel(&self) -> TunnelEndpoints {
            self.common.tunnel
        }

        /// UDP encapsulation ports, if any.
        pub fn udp_encap(&self) -> Option<UdpEncap> {
            self.common.udp_encap
        }

        /// The tunnel this SA belongs to.
        pub fn tunnel_id(&self) -> TunnelId {
            self.common.tunnel_id
        }

        /// Local traffic selectors.
        pub fn local_ts(&self) -> &[TrafficSelector] {
            &self.common.local_ts
        }

        /// Remote traffic selectors.
        pub fn remote_ts(&self) -> &[TrafficSelector] {
            &self.common.remote_ts
        }

        /// True once a hard lifetime was reached.
        pub fn is_expired(&self) -> bool {
            self.common.life.is_dead()
        }

        /// Counter snapshot.
        pub fn stats(&self) -> Stats {
            self.common.counters.snapshot()
        }

        /// The live counters.
        pub fn counters(&self) -> &Counters {
            &self.common.counters
        }

        /// Time-based lifetime check without a packet (timers).
        pub fn poll_lifetime(&self, now: Instant) -> Option<Expiry> {
            self.common.life.check_time(now).1
        }

        /// Next instant at which a time lifetime fires.
        pub fn next_deadline(&self) -> Option<Instant> {
            self.common.life.next_deadline()
        }
    };
}

/// Below this counter value the outbound sequence number is taken with a
/// plain `fetch_add` (see `OutboundSa::next_seq`).
const FAST_SEQ_LIMIT: u64 = 1 << 63;

/// Largest sequence number an SA may send.
fn max_seq(esn: bool) -> u64 {
    if esn {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    }
}

/// `n % align`, as a mask for the power-of-two block sizes every real
/// cipher has (a division costs tens of cycles per packet).
#[inline]
fn rem_align(n: usize, align: usize) -> usize {
    if align.is_power_of_two() {
        n & (align - 1)
    } else {
        n % align
    }
}

/// [`EspTrailer::pad_len_for`] without the division.
#[inline]
fn pad_len(inner_len: usize, block_len: usize) -> u8 {
    let align = block_len.max(4);
    if !align.is_power_of_two() {
        return EspTrailer::pad_len_for(inner_len, block_len);
    }
    // `align` is at most 128 (the pad length field's contract), so this
    // fits in u8.
    ((align - rem_align(inner_len + esp::TRAILER_LEN, align)) & (align - 1)) as u8
}

/// A successfully encapsulated packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    /// Where the ESP packet (SPI through ICV) now lies in the buffer.
    pub esp: Range<usize>,
    /// The sequence number used.
    pub seq: u64,
    /// A lifetime event this packet triggered (raised once per SA).
    pub event: Option<Expiry>,
}

/// Outbound (sending) direction of an ESP SA in tunnel mode.
pub struct OutboundSa {
    common: SaCommon,
    /// Last sequence number used (the next packet gets `seq + 1`).
    seq: AtomicU64,
}

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.common.spi))
            .field("suite", &self.common.cipher.suite())
            .field("esn", &self.common.esn)
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("tunnel", &self.common.tunnel)
            .field("tunnel_id", &self.common.tunnel_id)
            .finish_non_exhaustive()
    }
}

/// Headroom an ESP header plus IV needs in front of the inner packet.
pub const ESP_MAX_HEADROOM: usize = esp::HEADER_LEN + 16;
/// Tailroom the ESP trailer and ICV need (padding up to 15 bytes with a
/// 16-byte block, 2 trailer bytes, ICV up to 32 bytes).
pub const ESP_MAX_TAILROOM: usize = 15 + esp::TRAILER_LEN + 32;

impl OutboundSa {
    /// Creates the SA, keying the cipher through [`Suite::cipher`].
    pub fn new(params: &SaParams, now: Instant) -> Result<OutboundSa, SaError> {
        let cipher = params
            .suite
            .cipher(params.enc_key.as_bytes(), params.integ_key.as_bytes())?;
        OutboundSa::with_cipher(params, cipher, now)
    }

    /// Creates the SA around an already keyed cipher (custom crypto
    /// providers); `params.suite` and the keys are not used.
    pub fn with_cipher(
        params: &SaParams,
        cipher: Box<dyn Cipher>,
        now: Instant,
    ) -> Result<OutboundSa, SaError> {
        Ok(OutboundSa {
            common: SaCommon::new(params, cipher, now)?,
            seq: AtomicU64::new(0),
        })
    }

    sa_common_accessors!();

    /// Last sequence number used (0 before the first packet).
    pub fn last_seq(&self) -> u64 {
        // Past exhaustion the counter keeps counting refused attempts.
        self.seq
            .load(Ordering::Relaxed)
            .min(max_seq(self.common.esn))
    }

    /// Takes the next sequence number, or `None` once `max` was used.
    ///
    /// Below [`FAST_SEQ_LIMIT`] this is one `fetch_add`: the counter cannot
    /// wrap there (without ESN, `max` is 2^32 - 1 and refused attempts only
    /// walk the 64-bit counter a little past it). In the top half of the
    /// 64-bit space a compare-and-swap loop stops exactly at `max`. A
    /// thread that saw the counter below the limit adds at most once, so
    /// the counter exceeds the limit by at most the number of threads
    /// (only [`OutboundSa::skip_to`] can jump it close to `u64::MAX` while
    /// such an add is pending; it is a test hook).
    #[inline(always)]
    fn next_seq(&self, max: u64) -> Option<u64> {
        if self.seq.load(Ordering::Relaxed) < FAST_SEQ_LIMIT {
            let prev = self.seq.fetch_add(1, Ordering::Relaxed);
            return (prev < max).then_some(prev + 1);
        }
        self.seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                s.checked_add(1).filter(|n| *n <= max)
            })
            .ok()
            .map(|prev| prev + 1)
    }

    /// Moves the sequence counter forward so the next packet uses
    /// `next_seq` (never backwards: numbers are never reused). Useful to
    /// test sequence-space boundaries; the receiver just sees a gap.
    pub fn skip_to(&self, next_seq: u64) {
        self.seq
            .fetch_max(next_seq.saturating_sub(1), Ordering::AcqRel);
    }

    /// Bytes of header + IV in front of the inner packet.
    pub fn overhead_front(&self) -> usize {
        esp::HEADER_LEN + self.common.iv_len
    }

    /// Exact ESP packet length for an inner packet of `inner_len` bytes.
    pub fn esp_len(&self, inner_len: usize) -> usize {
        let pad = usize::from(EspTrailer::pad_len_for(inner_len, self.common.block_len));
        self.overhead_front() + inner_len + pad + esp::TRAILER_LEN + self.common.icv_len
    }

    /// Encapsulates the IP packet at `buf[inner]` in place (tunnel mode).
    ///
    /// `buf` must have [`OutboundSa::overhead_front`] bytes before
    /// `inner.start` and room after `inner.end` for padding, trailer and ICV
    /// ([`ESP_MAX_HEADROOM`]/[`ESP_MAX_TAILROOM`] always suffice). On success
    /// the ESP packet lies at the returned range. Drops are counted on the SA;
    /// on a drop the buffer content is unspecified.
    pub fn encapsulate(
        &self,
        now: Instant,
        buf: &mut [u8],
        inner: Range<usize>,
    ) -> Result<Encapsulated, Dropped> {
        let mut event = None;
        // The inner function puts `event` into its result itself, so the
        // success value is returned without another move.
        self.encapsulate_inner(now, buf, inner, &mut event)
            .map_err(|reason| {
                self.common.counters.count_drop(reason);
                Dropped { reason, event }
            })
    }

    fn encapsulate_inner(
        &self,
        now: Instant,
        buf: &mut [u8],
        inner: Range<usize>,
        event: &mut Option<Expiry>,
    ) -> Result<Encapsulated, DropReason> {
        let (dead, ev) = self.common.life.check_time(now);
        *event = ev;
        if dead {
            return Err(DropReason::SaExpired);
        }
        if inner.start > inner.end || inner.end > buf.len() {
            return Err(DropReason::BufferTooSmall);
        }
        let inner_len = inner.len();
        let next_header = match buf.get(inner.start).map(|b| b >> 4) {
            Some(4) => IpProtocol::IPV4,
            Some(6) => IpProtocol::IPV6,
            _ => return Err(DropReason::BadInnerPacket),
        };
        let front = self.overhead_front();
        let start = inner
            .start
            .checked_sub(front)
            .ok_or(DropReason::BufferTooSmall)?;
        let pad_len = pad_len(inner_len, self.common.block_len);
        let payload_end = inner.end + usize::from(pad_len) + esp::TRAILER_LEN;
        let end = payload_end + self.common.icv_len;
        if end > buf.len() {
            return Err(DropReason::BufferTooSmall);
        }
        // Sequence numbers never wrap: exhaustion is a hard expiry.
        let max = max_seq(self.common.esn);
        let Some(seq) = self.next_seq(max) else {
            if let Some(e) = self.common.life.kill() {
                *event = Some(e);
            }
            return Err(DropReason::SeqExhausted);
        };
        // Counted right after taking the sequence number: the two atomic
        // adds then run back to back, and neither waits for the stores of
        // the encryption to drain. Nothing below can fail for a buffer that
        // passed the checks above (a crypto provider that refuses it anyway
        // is counted as a CryptoFailure drop on top).
        if let Some(e) = self.common.life.count(&self.common.counters, inner_len) {
            *event = Some(e);
        } else if seq == max {
            // Last number used: the SA cannot send again.
            *event = self.common.life.kill().or(*event);
        } else if seq >= max - max / 16 {
            // 15/16 of the space used: ask for a rekey.
            *event = self.common.life.soften().or(*event);
        }
        let pkt = &mut buf[start..end];
        pkt[0..4].copy_from_slice(&self.common.spi.to_be_bytes());
        pkt[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        let payload_len = payload_end - inner.start;
        let (header, rest) = pkt.split_at_mut(esp::HEADER_LEN);
        let (iv, rest) = rest.split_at_mut(self.common.iv_len);
        let (payload, icv) = rest.split_at_mut(payload_len);
        EspTrailer {
            pad_len,
            next_header,
        }
        .emit(&mut payload[inner_len..])
        .map_err(|_| DropReason::BufferTooSmall)?;
        let esn_hi = self.common.esn.then_some((seq >> 32) as u32);
        self.common
            .cipher
            .seal(header, esn_hi, seq, iv, payload, icv)
            .map_err(|_| DropReason::CryptoFailure)?;
        Ok(Encapsulated {
            esp: start..end,
            seq,
            event: *event,
        })
    }
}

/// IP version of an inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A successfully decapsulated packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    /// Where the inner IP packet lies in the buffer.
    pub inner: Range<usize>,
    /// Its IP version.
    pub version: IpVersion,
    /// Its addresses, protocol and ports.
    pub flow: FlowKey,
    /// The full (ESN-inferred) sequence number.
    pub seq: u64,
    /// A lifetime event this packet triggered (raised once per SA).
    pub event: Option<Expiry>,
}

/// A drop with the lifetime event (if any) the attempt raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Why the packet was dropped.
    pub reason: DropReason,
    /// A lifetime event raised while processing it.
    pub event: Option<Expiry>,
}

/// Inbound (receiving) direction of an ESP SA in tunnel mode.
pub struct InboundSa {
    common: SaCommon,
    replay: ReplayWindow,
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.common.spi))
            .field("suite", &self.common.cipher.suite())
            .field("esn", &self.common.esn)
            .field("tunnel", &self.common.tunnel)
            .field("tunnel_id", &self.common.tunnel_id)
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// Creates the SA, keying the cipher through [`Suite::cipher`].
    pub fn new(params: &SaParams, now: Instant) -> Result<InboundSa, SaError> {
        let cipher = params
            .suite
            .cipher(params.enc_key.as_bytes(), params.integ_key.as_bytes())?;
        InboundSa::with_cipher(params, cipher, now)
    }

    /// Creates the SA around an already keyed cipher.
    pub fn with_cipher(
        params: &SaParams,
        cipher: Box<dyn Cipher>,
        now: Instant,
    ) -> Result<InboundSa, SaError> {
        let common = SaCommon::new(params, cipher, now)?;
        if params.local_ts.is_empty() || params.remote_ts.is_empty() {
            return Err(SaError::NoSelectors);
        }
        let replay =
            ReplayWindow::new(params.replay_window, params.esn).ok_or(SaError::BadReplayWindow)?;
        Ok(InboundSa { common, replay })
    }

    sa_common_accessors!();

    /// Highest authenticated sequence number.
    pub fn replay_top(&self) -> u64 {
        self.replay.top()
    }

    /// True if the inner flow (remote → local) is covered by the selectors.
    #[inline]
    pub fn selectors_match(&self, f: &FlowKey) -> bool {
        self.common.remote_ts.iter().any(|t| t.matches_src(f))
            && self.common.local_ts.iter().any(|t| t.matches_dst(f))
    }

    /// Decapsulates the ESP packet at `buf[esp]` in place: replay check,
    /// ICV verification and decryption, replay commit, trailer and padding
    /// check, inner packet validation and selector check. On success the
    /// inner IP packet lies at the returned range. Drops are counted on the
    /// SA.
    pub fn decapsulate(
        &self,
        now: Instant,
        buf: &mut [u8],
        esp: Range<usize>,
    ) -> Result<Decapsulated, Dropped> {
        let mut event = None;
        self.decapsulate_inner(now, buf, esp, &mut event)
            .map_err(|reason| {
                self.common.counters.count_drop(reason);
                Dropped { reason, event }
            })
    }

    fn decapsulate_inner(
        &self,
        now: Instant,
        buf: &mut [u8],
        esp: Range<usize>,
        event: &mut Option<Expiry>,
    ) -> Result<Decapsulated, DropReason> {
        let (dead, ev) = self.common.life.check_time(now);
        *event = ev;
        if dead {
            return Err(DropReason::SaExpired);
        }
        let pkt = buf.get_mut(esp.clone()).ok_or(DropReason::Truncated)?;
        let front = esp::HEADER_LEN + self.common.iv_len;
        let min = front + esp::TRAILER_LEN + self.common.icv_len;
        if pkt.len() < min {
            return Err(DropReason::Truncated);
        }
        let payload_len = pkt.len() - front - self.common.icv_len;
        if rem_align(payload_len, self.common.block_len.max(4)) != 0 {
            return Err(DropReason::BadLength);
        }
        let seq_low = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        // Check before spending work on the crypto.
        let seq = self.replay.check(seq_low)?;
        let (header, rest) = pkt.split_at_mut(esp::HEADER_LEN);
        let (iv, rest) = rest.split_at_mut(self.common.iv_len);
        let (payload, icv) = rest.split_at_mut(payload_len);
        let esn_hi = self.common.esn.then_some((seq >> 32) as u32);
        self.common
            .cipher
            .open(header, esn_hi, iv, payload, icv)
            .map_err(|e| match e {
                CryptoError::AuthFailed => DropReason::AuthFailed,
                CryptoError::BadLength => DropReason::BadLength,
                _ => DropReason::CryptoFailure,
            })?;
        // Authenticated: commit. This is the authoritative replay test (the
        // check above is a filter): of concurrent packets with the same
        // number, exactly one gets past it.
        self.replay.commit_shared(seq)?;
        let (trailer, inner_len) = EspTrailer::parse(payload).map_err(|e| match e {
            WireError::Truncated => DropReason::Truncated,
            _ => DropReason::BadPadding,
        })?;
        let inner = &payload[..inner_len];
        let version = match trailer.next_header {
            IpProtocol::IPV4 => IpVersion::V4,
            IpProtocol::IPV6 => IpVersion::V6,
            IpProtocol::NO_NEXT_HEADER => return Err(DropReason::DummyPacket),
            _ => return Err(DropReason::UnsupportedNextHeader),
        };
        // One version test, then the parser of that version only.
        let parsed = match (version, inner.first().map(|b| b >> 4)) {
            (_, None) => return Err(DropReason::BadInnerPacket),
            (IpVersion::V4, Some(4)) => FlowKey::parse_v4(inner),
            (IpVersion::V6, Some(6)) => FlowKey::parse_v6(inner),
            _ => return Err(DropReason::WrongInnerVersion),
        };
        let (flow, total) = parsed.map_err(|_| DropReason::BadInnerPacket)?;
        if total != inner_len {
            return Err(DropReason::BadInnerPacket);
        }
        if !self.selectors_match(&flow) {
            return Err(DropReason::SelectorMismatch);
        }
        if let Some(e) = self.common.life.count(&self.common.counters, inner_len) {
            *event = Some(e);
        }
        let start = esp.start + front;
        Ok(Decapsulated {
            inner: start..start + inner_len,
            version,
            flow,
            seq,
            event: *event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_len_matches_the_wire_rule() {
        for block in 0..=40 {
            for n in 0..300 {
                assert_eq!(
                    pad_len(n, block),
                    EspTrailer::pad_len_for(n, block),
                    "block {block} len {n}"
                );
                let a = block.max(4);
                assert_eq!(rem_align(n, a), n % a);
            }
        }
    }

    #[test]
    fn counters_fold_exactly() {
        let c = Counters::default();
        let mut want = (0u64, 0u64);
        // Cross the byte fold threshold several times with big packets, the
        // direct path for oversized ones, and the packet threshold.
        for i in 0..(3 * FOLD_PACKETS as usize / 2) {
            let len = match i % 1000 {
                0 => 70_000,
                1 => 0,
                _ => 1 + i % 1500,
            };
            want.0 += 1;
            want.1 += len as u64;
            if i % 4096 == 0 {
                assert_eq!(c.count_packet(len), want);
            } else {
                c.count(len, false);
            }
        }
        let s = c.snapshot();
        assert_eq!((s.packets, s.bytes), want);
        // 2^36 bytes in 64 KiB packets: the byte threshold folds too.
        let c = Counters::default();
        let n = (FOLD_BYTES / MAX_RECENT_LEN) * 2 + 7;
        for _ in 0..n {
            c.count(MAX_RECENT_LEN as usize, false);
        }
        assert_eq!(c.count_packet(1), (n + 1, n * MAX_RECENT_LEN + 1));
    }

    #[test]
    fn counters_are_exact_under_concurrency() {
        let c = Counters::default();
        let per_thread = 600_000u64;
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let c = &c;
                s.spawn(move || {
                    let mut last = (0, 0);
                    for i in 0..per_thread {
                        let len = ((i * 7 + t) % 1500) as usize;
                        if i % 64 == 0 {
                            // Totals include this packet and never go back.
                            let now = c.count_packet(len);
                            assert!(now.0 > last.0 && now.1 >= last.1, "{now:?} {last:?}");
                            last = now;
                        } else {
                            c.count(len, false);
                        }
                    }
                });
            }
            // A reader while traffic flows: monotonic snapshots.
            let mut last = 0;
            for _ in 0..2000 {
                let s = c.snapshot();
                assert!(s.packets >= last);
                last = s.packets;
            }
        });
        let want_bytes: u64 = (0..4u64)
            .map(|t| (0..per_thread).map(|i| (i * 7 + t) % 1500).sum::<u64>())
            .sum();
        let s = c.snapshot();
        assert_eq!(s.packets, 4 * per_thread);
        assert_eq!(s.bytes, want_bytes);
    }
}
