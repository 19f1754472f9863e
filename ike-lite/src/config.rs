//! Endpoint and peer configuration.
//!
//! [`Config`] holds endpoint-wide settings (ports, flood limits);
//! [`PeerConfig`] describes one connection: addresses, identities, the
//! pre-shared key, proposals, traffic selectors, lifetimes, DPD and
//! retransmission policy.

use crate::flood::FloodLimits;
use crate::message::{IdPayload, IdType};
use crate::proposal::{EspProposal, IkeProposal};
use crate::ts::TrafficSelector;
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

/// A pre-shared key. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    /// Wraps key bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Psk(Zeroizing::new(key.into()))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// An IKE identity (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_FQDN.
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Email(String),
    /// ID_KEY_ID (opaque bytes).
    KeyId(Vec<u8>),
}

impl Identity {
    /// The identity for an IP address.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Identity::Ipv4(a),
            IpAddr::V6(a) => Identity::Ipv6(a),
        }
    }

    /// The wire payload body.
    pub fn to_payload(&self) -> IdPayload {
        let (id_type, data) = match self {
            Identity::Ipv4(a) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Identity::Ipv6(a) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Identity::Fqdn(s) => (IdType::FQDN, s.as_bytes().to_vec()),
            Identity::Email(s) => (IdType::RFC822_ADDR, s.as_bytes().to_vec()),
            Identity::KeyId(k) => (IdType::KEY_ID, k.clone()),
        };
        IdPayload { id_type, data }
    }

    /// Reads an identity from a payload; `None` for unsupported types or bad
    /// lengths.
    pub fn from_payload(p: &IdPayload) -> Option<Self> {
        Some(match p.id_type {
            IdType::IPV4_ADDR => {
                Identity::Ipv4(<[u8; 4]>::try_from(p.data.as_slice()).ok()?.into())
            }
            IdType::IPV6_ADDR => {
                Identity::Ipv6(<[u8; 16]>::try_from(p.data.as_slice()).ok()?.into())
            }
            IdType::FQDN => Identity::Fqdn(String::from_utf8(p.data.clone()).ok()?),
            IdType::RFC822_ADDR => Identity::Email(String::from_utf8(p.data.clone()).ok()?),
            IdType::KEY_ID => Identity::KeyId(p.data.clone()),
            _ => return None,
        })
    }
}

/// Retransmission policy for requests (RFC 7296 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// Delay before the first retransmission.
    pub initial: Duration,
    /// Upper bound of the (doubling) delay.
    pub max_interval: Duration,
    /// Retransmissions before giving up.
    pub max_retries: u32,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        RetransmitPolicy {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(16),
            max_retries: 7,
        }
    }
}

/// Endpoint-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// IKE_SA_INIT flood limits: cookies (RFC 7296 §2.6), per-source and
    /// global half-open limits, the half-open timeout.
    pub flood: FloodLimits,
    /// UDP port of plain IKE (500).
    pub ike_port: u16,
    /// UDP port of NAT-T (4500); messages there carry the non-ESP marker.
    pub natt_port: u16,
    /// Interval of NAT keepalives when this side is behind a NAT.
    pub keepalive_interval: Duration,
    /// Encrypted messages larger than this (IKE message bytes) are sent as
    /// RFC 7383 fragments when the peer announced support.
    pub fragment_size: usize,
    /// Emit [`Event::IkeSaSecrets`](crate::Event::IkeSaSecrets) and answer
    /// [`Endpoint::ike_sa_secrets`](crate::Endpoint::ike_sa_secrets), so
    /// that a driver can log IKE keys for Wireshark. Debugging only; off by
    /// default (the keys are then not even kept beyond the SK ciphers).
    pub export_ike_keys: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flood: FloodLimits::default(),
            ike_port: 500,
            natt_port: 4500,
            keepalive_interval: Duration::from_secs(20),
            fragment_size: 1280,
            export_ike_keys: false,
        }
    }
}

/// Identifies a configured connection
/// ([`Endpoint::add_peer`](crate::Endpoint::add_peer)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// One connection (peer) definition.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Local address and IKE port (usually port 500).
    pub local: SocketAddr,
    /// Remote address and IKE port. For a responder-only connection the IP
    /// may be unspecified (`0.0.0.0`) to accept any peer.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must present; `None` accepts any.
    pub remote_id: Option<Identity>,
    /// Pre-shared key.
    pub psk: Psk,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order (a DH group enables PFS on rekey).
    pub esp_proposals: Vec<EspProposal>,
    /// Our side's traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer side's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// IKE SA lifetime (hard).
    pub ike_lifetime: Duration,
    /// Child SA lifetime (hard).
    pub child_lifetime: Duration,
    /// Rekey this long before the lifetime ends.
    pub rekey_margin: Duration,
    /// Random extra fraction of the margin, 0.0..=1.0 (Libreswan rekeyfuzz):
    /// rekey at `lifetime - margin * (1 + random * fuzz)`.
    pub rekey_fuzz: f64,
    /// Send a liveness check after this long without hearing from the peer.
    pub dpd_delay: Option<Duration>,
    /// Declare the peer dead when a liveness check gets no answer this long.
    pub dpd_timeout: Duration,
    /// Request retransmission.
    pub retransmit: RetransmitPolicy,
    /// Anti-replay window handed to the ESP layer.
    pub replay_window: u32,
    /// Use UDP encapsulation even without a NAT.
    pub force_encap: bool,
}

impl PeerConfig {
    /// A configuration with strong default proposals, 0.0.0.0/0 selectors on
    /// both sides, Libreswan-like lifetimes (IKE 8 h, Child 8 h
    /// rekeyed 9 min early with 100 % fuzz), DPD off.
    pub fn new(local: SocketAddr, remote: SocketAddr, local_id: Identity, psk: Psk) -> Self {
        let any = if local.is_ipv4() {
            TrafficSelector::any_v4()
        } else {
            TrafficSelector::any_v6()
        };
        PeerConfig {
            local,
            remote,
            local_id,
            remote_id: None,
            psk,
            ike_proposals: IkeProposal::defaults(),
            esp_proposals: EspProposal::defaults(),
            local_ts: vec![any],
            remote_ts: vec![any],
            ike_lifetime: Duration::from_secs(8 * 3600),
            child_lifetime: Duration::from_secs(8 * 3600),
            rekey_margin: Duration::from_secs(540),
            rekey_fuzz: 1.0,
            dpd_delay: None,
            dpd_timeout: Duration::from_secs(30),
            retransmit: RetransmitPolicy::default(),
            replay_window: 128,
            force_encap: false,
        }
    }

    /// The rekey time for an SA with `lifetime`, given a uniform random
    /// fraction `r` in `0..1`: `lifetime - margin * (1 + r * fuzz)`, never
    /// earlier than half the lifetime.
    pub fn rekey_after(&self, lifetime: Duration, r: f64) -> Duration {
        let fuzz = self.rekey_fuzz.clamp(0.0, 1.0);
        let margin = self.rekey_margin.mul_f64(1.0 + r.clamp(0.0, 1.0) * fuzz);
        lifetime.saturating_sub(margin).max(lifetime / 2)
    }
}
