//! IKE_SA_INIT flood resistance: which new IKE_SA_INIT requests the
//! endpoint admits, and what half-open responder SAs may cost.
//!
//! Owns the limits ([`FloodLimits`], strongSwan's charon defaults), the
//! counters ([`EndpointStats`], a plain struct for metrics), the stateless
//! cookie of RFC 7296 §2.6 with its rotating secret, the zero-copy view of
//! an IKE_SA_INIT request that the cookie check reads ([`InitView`]) and
//! the table of half-open responder SAs (by initiator SPI and address, per
//! source address, by deadline).
//!
//! The rules are those of strongSwan's `receiver.c` (`drop_ike_sa_init`),
//! applied in this order to a new IKE_SA_INIT request (not a retransmission
//! of one that already has a half-open SA):
//!
//! 1. Cookies are required when [`CookieMode::Always`], or in
//!    [`CookieMode::Auto`] when the half-open responder SAs number at least
//!    `cookie_threshold`, or those of the request's source address at least
//!    `cookie_threshold_ip`, or either was true less than 10 s ago (so that
//!    a legitimate initiator is not answered once with and once without a
//!    cookie). A request without a valid cookie is answered with a fresh
//!    COOKIE notify and nothing else happens: no Diffie-Hellman, no nonce,
//!    no SA state.
//! 2. A source with `block_threshold` half-open SAs is ignored.
//! 3. With `init_limit_half_open` half-open SAs in all, every new request is
//!    ignored.
//!
//! A half-open SA is freed `half_open_timeout` after its IKE_SA_INIT
//! response; its memory is bounded because a request longer than
//! `max_init_request_len` is dropped before anything is stored.

use crate::message::{ExchangeType, Flags, Header, NotifyType, PayloadType, HEADER_LEN};
use core::fmt;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a cookie is accepted after it was made (strongSwan's
/// `COOKIE_LIFETIME`).
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(10);
/// Cookies stay required this long after the last time a threshold was
/// reached (strongSwan's `COOKIE_CALMDOWN_DELAY`).
pub const COOKIE_CALMDOWN: Duration = Duration::from_secs(10);
/// A cookie secret is replaced this long after its first use; the previous
/// one still verifies the cookies made before (strongSwan's
/// `COOKIE_SECRET_SWITCH`; it must exceed [`COOKIE_LIFETIME`]).
pub const COOKIE_SECRET_SWITCH: Duration = Duration::from_secs(120);
/// Length of our cookies: a 4-byte timestamp and an HMAC-SHA-256.
pub const COOKIE_LEN: usize = 4 + 32;
/// Number of per-address calm-down buckets (strongSwan's
/// `COOKIE_CALMDOWN_BUCKETS`): addresses share a bucket by a keyed hash, so
/// one targeted address does not turn cookies on for everyone.
const CALMDOWN_BUCKETS: usize = 32;

/// When IKE_SA_INIT requests must carry a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CookieMode {
    /// By the thresholds of [`FloodLimits`] (Libreswan's `ddos-mode=auto`).
    #[default]
    Auto,
    /// Always (Libreswan's `ddos-mode=busy`).
    Always,
    /// Never (Libreswan's `ddos-mode=unlimited`); blocking and the global
    /// cap still apply.
    Never,
}

/// The anti-flood settings of an endpoint. Defaults are strongSwan's
/// charon defaults, except `init_limit_half_open` (see there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodLimits {
    /// When cookies are required.
    pub cookies: CookieMode,
    /// Cookies are required while this many half-open responder SAs exist
    /// (charon `cookie_threshold`, 30; 0 turns this rule off).
    pub cookie_threshold: u32,
    /// Cookies are required from a source address with this many half-open
    /// SAs (charon `cookie_threshold_ip`, 3; 0 turns this rule off).
    pub cookie_threshold_ip: u32,
    /// IKE_SA_INIT requests from a source address with this many half-open
    /// SAs are ignored (charon `block_threshold`, 5; 0 turns this rule
    /// off). Like charon, a value not above `cookie_threshold_ip` is raised
    /// to `cookie_threshold_ip + 1` ([`FloodLimits::effective_block_threshold`]).
    pub block_threshold: u32,
    /// New IKE_SA_INIT requests are ignored while this many half-open SAs
    /// exist (charon `init_limit_half_open`; 0 is unlimited). charon's
    /// default is unlimited; ours is 4096: a site-to-site gateway has far
    /// fewer peers handshaking at once (each half-open SA lives one round
    /// trip when the peer is real), an attacker who can receive cookies
    /// needs 820 addresses (at 5 each) to reach it, and 4096 half-open SAs
    /// cost about 14 MiB of heap (3.4 KiB each with a 208-byte request,
    /// measured by ike-lite's `flood_memory` test), at most about 30 MiB
    /// with `max_init_request_len`-sized requests.
    pub init_limit_half_open: u32,
    /// A half-open responder SA is freed this long after its IKE_SA_INIT
    /// response (charon `half_open_timeout`, 30 s).
    pub half_open_timeout: Duration,
    /// IKE_SA_INIT requests longer than this many bytes are dropped before
    /// anything is stored (the request is kept for the AUTH payload, so
    /// this bounds the memory of a half-open SA). 4096 leaves room for
    /// MODP-8192 and long proposal lists.
    pub max_init_request_len: usize,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            cookies: CookieMode::Auto,
            cookie_threshold: 30,
            cookie_threshold_ip: 3,
            block_threshold: 5,
            init_limit_half_open: 4096,
            half_open_timeout: Duration::from_secs(30),
            max_init_request_len: 4096,
        }
    }
}

impl FloodLimits {
    /// The block threshold in force: in [`CookieMode::Auto`], charon raises
    /// a `block_threshold` not above `cookie_threshold_ip` to
    /// `cookie_threshold_ip + 1` (otherwise a source would be blocked
    /// before it is asked for cookies).
    pub fn effective_block_threshold(&self) -> u32 {
        if self.cookies == CookieMode::Auto
            && self.block_threshold != 0
            && self.cookie_threshold_ip != 0
            && self.cookie_threshold_ip >= self.block_threshold
        {
            self.cookie_threshold_ip.saturating_add(1)
        } else {
            self.block_threshold
        }
    }
}

/// Counters of one outcome class per exchange type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Processed (a request answered or a response consumed).
    pub handled: u64,
    /// Turned away with an answer (COOKIE, INVALID_KE_PAYLOAD, no proposal).
    pub refused: u64,
    /// Dropped without effect (unknown SPI, failed integrity, unexpected,
    /// malformed, flood limits).
    pub dropped: u64,
}

/// IKE messages received, by exchange type and outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// IKE_SA_INIT (34).
    pub ike_sa_init: Outcomes,
    /// IKE_AUTH (35).
    pub ike_auth: Outcomes,
    /// CREATE_CHILD_SA (36).
    pub create_child_sa: Outcomes,
    /// INFORMATIONAL (37).
    pub informational: Outcomes,
    /// Any other exchange type.
    pub other: Outcomes,
    /// Datagrams without a usable IKE header (too short, bad length,
    /// another major version, missing non-ESP marker).
    pub unparsable: u64,
}

impl Received {
    /// The counters of `exchange`.
    pub fn of(&self, exchange: ExchangeType) -> &Outcomes {
        match exchange {
            ExchangeType::IKE_SA_INIT => &self.ike_sa_init,
            ExchangeType::IKE_AUTH => &self.ike_auth,
            ExchangeType::CREATE_CHILD_SA => &self.create_child_sa,
            ExchangeType::INFORMATIONAL => &self.informational,
            _ => &self.other,
        }
    }

    fn of_mut(&mut self, exchange: ExchangeType) -> &mut Outcomes {
        match exchange {
            ExchangeType::IKE_SA_INIT => &mut self.ike_sa_init,
            ExchangeType::IKE_AUTH => &mut self.ike_auth,
            ExchangeType::CREATE_CHILD_SA => &mut self.create_child_sa,
            ExchangeType::INFORMATIONAL => &mut self.informational,
            _ => &mut self.other,
        }
    }

    /// Counts one message of `exchange` with outcome `outcome`.
    pub(crate) fn count(&mut self, exchange: ExchangeType, outcome: Outcome) {
        let o = self.of_mut(exchange);
        match outcome {
            Outcome::Handled => o.handled += 1,
            Outcome::Refused => o.refused += 1,
            Outcome::Dropped => o.dropped += 1,
        }
    }
}

/// The outcome class of one received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    Refused,
    Dropped,
}

/// New IKE_SA_INIT requests dropped before any work, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitDrops {
    /// The source had `block_threshold` half-open SAs.
    pub blocked_source: u64,
    /// `init_limit_half_open` half-open SAs existed.
    pub half_open_limit: u64,
    /// A COOKIE was present but wrong or expired (answered with a fresh
    /// one).
    pub bad_cookie: u64,
    /// Longer than `max_init_request_len`.
    pub oversized: u64,
    /// Cookies were required and the request has no nonce to make one
    /// from.
    pub malformed: u64,
}

/// The endpoint-wide counters (see [`Endpoint::endpoint_stats`](crate::Endpoint::endpoint_stats)).
/// Gauges are "now"; the rest count since the endpoint was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Half-open responder IKE SAs now (IKE_SA_INIT answered, IKE_AUTH not
    /// yet done).
    pub half_open: u64,
    /// Source addresses now at `block_threshold` half-open SAs (their new
    /// IKE_SA_INIT requests are ignored).
    pub blocked_sources: u64,
    /// COOKIE notifies sent.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests that carried a valid cookie.
    pub cookies_verified: u64,
    /// New IKE_SA_INIT requests dropped, by reason.
    pub init_dropped: InitDrops,
    /// Half-open SAs freed by `half_open_timeout`.
    pub half_open_expired: u64,
    /// IKE messages received, by exchange type and outcome.
    pub received: Received,
}

/// What the cookie check reads of an IKE_SA_INIT request, found by walking
/// the generic payload headers without parsing (or allocating) anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitView<'a> {
    /// The data of a COOKIE notify that is the first payload (RFC 7296
    /// §2.6 puts it there).
    pub cookie: Option<&'a [u8]>,
    /// The body of the first Nonce payload (Ni).
    pub nonce: &'a [u8],
}

impl<'a> InitView<'a> {
    /// Walks an IKE message (header included, non-ESP marker removed).
    /// `None` when the payload chain runs past the buffer or there is no
    /// Nonce payload.
    pub fn parse(msg: &'a [u8]) -> Option<InitView<'a>> {
        let mut next = *msg.get(16)?;
        let mut rest = msg.get(HEADER_LEN..)?;
        let mut first = true;
        let mut cookie = None;
        let mut nonce = None;
        while next != PayloadType::NONE.0 {
            let [following, _, hi, lo, ..] = *rest else {
                return None;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let body = rest.get(4..len)?;
            if next == PayloadType::NOTIFY.0 && first {
                // Protocol ID, SPI size 0, notify type, data.
                if let [_, 0, t0, t1, data @ ..] = body {
                    if u16::from_be_bytes([*t0, *t1]) == NotifyType::COOKIE.0 {
                        cookie = Some(data);
                    }
                }
            } else if next == PayloadType::NONCE.0 && nonce.is_none() {
                nonce = Some(body);
            }
            first = false;
            next = following;
            rest = &rest[len..];
        }
        Some(InitView {
            cookie,
            nonce: nonce?,
        })
    }
}

/// The cookie secret, its predecessor, and the clock cookies are stamped
/// with (seconds since the first cookie was made).
struct CookieJar {
    current: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
    /// The instant of timestamp 0; set when the first cookie is made.
    epoch: Option<Instant>,
    /// The timestamp at which `current` was first used.
    current_since: Option<u32>,
}

impl CookieJar {
    fn stamp(epoch: Instant, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn mac(secret: &[u8; 32], t: u32, ni: &[u8], ip: IpAddr, spi_i: u64) -> [u8; 32] {
        // A 32-byte key is always accepted by HMAC.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&t.to_be_bytes());
        m.update(ni);
        match ip {
            IpAddr::V4(a) => m.update(&a.octets()),
            IpAddr::V6(a) => m.update(&a.octets()),
        }
        m.update(&spi_i.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    /// Makes a cookie `t | HMAC-SHA-256(secret, t | Ni | IPi | SPIi)`,
    /// first replacing a secret used for longer than
    /// [`COOKIE_SECRET_SWITCH`].
    fn make(
        &mut self,
        now: Instant,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
        rng: &mut dyn CryptoRngCore,
    ) -> [u8; COOKIE_LEN] {
        let epoch = *self.epoch.get_or_insert(now);
        let t = Self::stamp(epoch, now);
        match self.current_since {
            None => self.current_since = Some(t),
            Some(since) if u64::from(t - since.min(t)) > COOKIE_SECRET_SWITCH.as_secs() => {
                let mut fresh = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(&mut fresh[..]);
                self.previous = Some(core::mem::replace(&mut self.current, fresh));
                self.current_since = Some(t);
            }
            Some(_) => {}
        }
        let mut out = [0u8; COOKIE_LEN];
        out[..4].copy_from_slice(&t.to_be_bytes());
        out[4..].copy_from_slice(&Self::mac(&self.current, t, ni, ip, spi_i));
        out
    }

    /// Whether `cookie` is one we made for this request less than
    /// [`COOKIE_LIFETIME`] ago (compared in constant time).
    fn verify(&self, now: Instant, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        use subtle::ConstantTimeEq;
        let (Some(epoch), Some(since)) = (self.epoch, self.current_since) else {
            return false;
        };
        let Some((t, _)) = cookie.split_first_chunk::<4>() else {
            return false;
        };
        let t = u32::from_be_bytes(*t);
        let now_t = Self::stamp(epoch, now);
        if cookie.len() != COOKIE_LEN
            || t > now_t
            || u64::from(now_t - t) > COOKIE_LIFETIME.as_secs()
        {
            return false;
        }
        let secret = if t >= since {
            &self.current
        } else if let Some(p) = &self.previous {
            p
        } else {
            return false;
        };
        let expected = Self::mac(secret, t, ni, ip, spi_i);
        bool::from(cookie[4..].ct_eq(&expected[..]))
    }
}

/// Why a new IKE_SA_INIT request is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on with the exchange.
    Admit,
    /// Answer with this COOKIE and stop.
    Cookie([u8; COOKIE_LEN]),
    /// Ignore it.
    Drop,
}

/// The admission state: cookie secrets, calm-down times, counters.
pub(crate) struct Guard {
    jar: CookieJar,
    /// Last time a threshold was reached: [0] global, then per bucket.
    last_over: [Option<Instant>; 1 + CALMDOWN_BUCKETS],
    bucket_key: u64,
    pub stats: EndpointStats,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A new IKE_SA_INIT request as the guard sees it.
pub(crate) struct InitRequest<'a> {
    pub remote: IpAddr,
    pub spi_i: u64,
    /// The IKE message, header included.
    pub msg: &'a [u8],
}

impl Guard {
    /// A guard whose first cookie secret is `secret`.
    pub fn new(secret: Zeroizing<[u8; 32]>) -> Guard {
        // The bucket key only needs to be unknown to senders; derive it
        // from the secret instead of drawing more randomness.
        let digest = Sha256::new()
            .chain_update(b"ike-lite cookie calm-down buckets")
            .chain_update(&secret[..])
            .finalize();
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        Guard {
            jar: CookieJar {
                current: secret,
                previous: None,
                epoch: None,
                current_since: None,
            },
            last_over: [None; 1 + CALMDOWN_BUCKETS],
            bucket_key: u64::from_le_bytes(key),
            stats: EndpointStats::default(),
        }
    }

    fn bucket(&self, ip: IpAddr) -> usize {
        let mut h = self.bucket_key;
        let mut mix = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        match ip {
            IpAddr::V4(a) => mix(&a.octets()),
            IpAddr::V6(a) => mix(&a.octets()),
        }
        // MurmurHash3's finalizer: every input bit reaches the low bits.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        1 + (h % CALMDOWN_BUCKETS as u64) as usize
    }

    /// Whether `count` reaches `threshold` now or did so less than
    /// [`COOKIE_CALMDOWN`] ago (in calm-down slot `slot`).
    fn over(&mut self, slot: usize, count: u32, threshold: u32, now: Instant) -> bool {
        if threshold == 0 {
            return false;
        }
        if count >= threshold {
            self.last_over[slot] = Some(now);
            return true;
        }
        self.last_over[slot].is_some_and(|t| now < t + COOKIE_CALMDOWN)
    }

    /// Decides about a new IKE_SA_INIT request given the half-open SAs in
    /// all (`global`) and of its source (`of_source`). Counts what it
    /// decides. Draws randomness only to replace the cookie secret.
    pub fn check_init(
        &mut self,
        limits: &FloodLimits,
        now: Instant,
        req: &InitRequest<'_>,
        global: u32,
        of_source: u32,
        rng: &mut dyn CryptoRngCore,
    ) -> Verdict {
        let drops = &mut self.stats.init_dropped;
        if req.msg.len() > limits.max_init_request_len {
            drops.oversized += 1;
            return Verdict::Drop;
        }
        let required = match limits.cookies {
            CookieMode::Always => true,
            CookieMode::Never => false,
            CookieMode::Auto => {
                // Both evaluated: each keeps its own calm-down time.
                let all = self.over(0, global, limits.cookie_threshold, now);
                let slot = self.bucket(req.remote);
                let one = self.over(slot, of_source, limits.cookie_threshold_ip, now);
                all || one
            }
        };
        if required {
            let Some(view) = InitView::parse(req.msg) else {
                self.stats.init_dropped.malformed += 1;
                return Verdict::Drop;
            };
            let valid = view
                .cookie
                .is_some_and(|c| self.jar.verify(now, c, view.nonce, req.remote, req.spi_i));
            if !valid {
                if view.cookie.is_some() {
                    self.stats.init_dropped.bad_cookie += 1;
                }
                self.stats.cookies_sent += 1;
                let c = self.jar.make(now, view.nonce, req.remote, req.spi_i, rng);
                return Verdict::Cookie(c);
            }
            self.stats.cookies_verified += 1;
        }
        let block = limits.effective_block_threshold();
        if block != 0 && of_source >= block {
            self.stats.init_dropped.blocked_source += 1;
            return Verdict::Drop;
        }
        if limits.init_limit_half_open != 0 && global >= limits.init_limit_half_open {
            self.stats.init_dropped.half_open_limit += 1;
            return Verdict::Drop;
        }
        Verdict::Admit
    }
}

/// The IKE_SA_INIT response carrying only `N(COOKIE)` for a request with
/// initiator SPI `spi_i` (the non-ESP marker is added by the caller).
pub(crate) fn cookie_response(spi_i: u64, cookie: &[u8; COOKIE_LEN]) -> Vec<u8> {
    const NOTIFY_HEADER: usize = 8;
    let total = HEADER_LEN + NOTIFY_HEADER + COOKIE_LEN;
    let mut out = vec![0u8; total];
    let mut h = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
    h.next_payload = PayloadType::NOTIFY;
    h.length = total as u32;
    h.emit(&mut out[..HEADER_LEN]);
    let n = &mut out[HEADER_LEN..];
    // Next payload none, not critical, length; protocol 0, SPI size 0, type.
    n[2..4].copy_from_slice(&((NOTIFY_HEADER + COOKIE_LEN) as u16).to_be_bytes());
    n[6..8].copy_from_slice(&NotifyType::COOKIE.0.to_be_bytes());
    n[NOTIFY_HEADER..].copy_from_slice(cookie);
    out
}

/// One half-open responder SA's place in the table.
struct Entry<T> {
    key: (u64, SocketAddr),
    deadline: Instant,
    value: T,
}

/// The half-open responder SAs: by id, by (initiator SPI, address), counted
/// per source address, ordered by deadline.
pub(crate) struct HalfOpenTable<T> {
    entries: HashMap<u64, Entry<T>>,
    by_init: HashMap<(u64, SocketAddr), u64>,
    per_source: HashMap<IpAddr, u32>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Sources with at least `block` entries.
    blocked: u64,
}

impl<T> Default for HalfOpenTable<T> {
    fn default() -> Self {
        HalfOpenTable {
            entries: HashMap::new(),
            by_init: HashMap::new(),
            per_source: HashMap::new(),
            deadlines: BTreeSet::new(),
            blocked: 0,
        }
    }
}

impl<T> HalfOpenTable<T> {
    /// Number of half-open SAs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Half-open SAs in all, saturated to `u32`.
    pub fn count(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }

    /// Half-open SAs of source address `ip`.
    pub fn count_from(&self, ip: IpAddr) -> u32 {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }

    /// Sources at the block threshold `block` (as last inserted/removed
    /// with).
    pub fn blocked(&self) -> u64 {
        self.blocked
    }

    /// The id of the half-open SA started by `key`'s request.
    pub fn find(&self, key: &(u64, SocketAddr)) -> Option<u64> {
        self.by_init.get(key).copied()
    }

    /// The half-open SA `id`.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.entries.get(&id).map(|e| &e.value)
    }

    /// The half-open SA `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.entries.get_mut(&id).map(|e| &mut e.value)
    }

    /// Whether `id` is half-open.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// Adds half-open SA `id`; `block` is the block threshold in force.
    pub fn insert(
        &mut self,
        id: u64,
        key: (u64, SocketAddr),
        deadline: Instant,
        value: T,
        block: u32,
    ) {
        let n = self.per_source.entry(key.1.ip()).or_insert(0);
        *n += 1;
        if block != 0 && *n == block {
            self.blocked += 1;
        }
        self.by_init.insert(key, id);
        self.deadlines.insert((deadline, id));
        self.entries.insert(
            id,
            Entry {
                key,
                deadline,
                value,
            },
        );
    }

    /// Removes half-open SA `id` (it completed, failed or expired).
    pub fn remove(&mut self, id: u64, block: u32) -> Option<T> {
        let e = self.entries.remove(&id)?;
        self.by_init.remove(&e.key);
        self.deadlines.remove(&(e.deadline, id));
        let ip = e.key.1.ip();
        if let Some(n) = self.per_source.get_mut(&ip) {
            if block != 0 && *n == block {
                self.blocked = self.blocked.saturating_sub(1);
            }
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
        Some(e.value)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The ids whose deadline is not after `now`.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        self.deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Gives memory back after a flood: hash tables far larger than their
    /// contents are shrunk.
    pub fn shrink(&mut self) {
        fn shrink<K: Eq + core::hash::Hash, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 64 && m.len() * 4 < m.capacity() {
                m.shrink_to(m.len() * 2);
            }
        }
        shrink(&mut self.entries);
        shrink(&mut self.by_init);
        shrink(&mut self.per_source);
    }
}

#[cfg(test)]
mod tests;
