//! A negotiated Child SA as handed to the ESP layer ([`ChildSa`], with its
//! [`KeyMaterial`]) and its one conversion into [`ipsec_core`]'s
//! [`SaParams`] ([`ChildSa::sa_params`]).

use crate::config::ConnId;
use crate::ts::TrafficSelector;
use core::fmt;
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::Direction;
use ipsec_core::sa::{SaParams, TunnelEndpoints, UdpEncap};
use ipsec_core::secret::SecretBytes;
use std::net::SocketAddr;
use std::time::Duration;

/// Key material of one direction of a Child SA, handed to the ESP layer:
/// the encryption and the integrity key ([`SecretBytes`]: zeroized on drop,
/// redacted `Debug`, constant-time `==`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    enc: SecretBytes,
    integ: SecretBytes,
}

impl KeyMaterial {
    pub(crate) fn new(enc: SecretBytes, integ: SecretBytes) -> Self {
        KeyMaterial { enc, integ }
    }

    /// Encryption key (including the 4-byte salt for AES-GCM).
    pub fn enc_key(&self) -> &[u8] {
        &self.enc
    }

    /// Integrity key (empty for AES-GCM).
    pub fn integ_key(&self) -> &[u8] {
        &self.integ
    }

    /// Builds the ESP cipher for this direction
    /// ([`Suite::cipher`](ipsec_core::crypto::Suite::cipher)).
    pub fn cipher(
        &self,
        suite: Suite,
    ) -> Result<Box<dyn ipsec_core::crypto::Cipher>, ipsec_core::crypto::CryptoError> {
        suite.cipher(&self.enc, &self.integ)
    }
}

/// Everything the ESP layer needs to install one Child SA (both directions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSa {
    /// The connection.
    pub conn: ConnId,
    /// SPI of inbound ESP packets (chosen by us).
    pub spi_in: u32,
    /// SPI of outbound ESP packets (chosen by the peer).
    pub spi_out: u32,
    /// ESP suite.
    pub suite: Suite,
    /// Inbound key material.
    pub key_in: KeyMaterial,
    /// Outbound key material.
    pub key_out: KeyMaterial,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Our side's negotiated selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer side's negotiated selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Our address (tunnel endpoint).
    pub local: SocketAddr,
    /// The peer's address (tunnel endpoint; port is the NAT-T port when
    /// `udp_encap`).
    pub remote: SocketAddr,
    /// Whether ESP is UDP-encapsulated (RFC 3948).
    pub udp_encap: bool,
    /// Hard lifetime.
    pub lifetime: Duration,
    /// Anti-replay window.
    pub replay_window: u32,
    /// For a rekey: the inbound SPI of the SA this one replaces.
    pub rekey_of: Option<u32>,
}

/// The UDP port of NAT traversal (RFC 3948), ours for UDP-encapsulated ESP.
pub const NATT_PORT: u16 = 4500;
/// The smallest and largest anti-replay window the ESP layer accepts.
const REPLAY_WINDOW: core::ops::RangeInclusive<u32> = 32..=4096;

/// Why a [`ChildSa`] cannot be turned into [`SaParams`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaParamsError {
    /// The ESP suite is not supported by `ipsec_core`.
    Suite(ipsec_core::crypto::CryptoError),
    /// The key material does not have the suite's key lengths.
    KeyLength {
        /// Encryption key bytes received.
        enc: usize,
        /// Integrity key bytes received.
        integ: usize,
    },
    /// No selector on one side (the negotiation always yields one).
    NoSelectors,
    /// The tunnel endpoints are of different address families.
    MixedTunnelFamilies,
}

impl fmt::Display for SaParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaParamsError::Suite(e) => write!(f, "ESP suite: {e}"),
            SaParamsError::KeyLength { enc, integ } => {
                write!(
                    f,
                    "key material of {enc}+{integ} bytes does not fit the suite"
                )
            }
            SaParamsError::NoSelectors => f.write_str("no traffic selectors"),
            SaParamsError::MixedTunnelFamilies => f.write_str("tunnel endpoints mix IPv4 and IPv6"),
        }
    }
}

impl std::error::Error for SaParamsError {}

impl ChildSa {
    /// The parameters of one direction of this Child SA for
    /// [`ipsec_core`]: SPI and keys of `direction`, suite, ESN, the replay
    /// window clamped to 32..=4096, selectors, tunnel endpoints and, with
    /// NAT-T, UDP encapsulation from our port 4500 to the peer's NAT-T port
    /// (4500 when the peer is still known by its port 500). Lifetimes are
    /// left unset: they are the caller's policy.
    pub fn sa_params(&self, direction: Direction) -> Result<SaParams, SaParamsError> {
        let (spi, key) = match direction {
            Direction::Inbound => (self.spi_in, &self.key_in),
            Direction::Outbound => (self.spi_out, &self.key_out),
        };
        let enc_len = self.suite.enc_key_len().map_err(SaParamsError::Suite)?;
        if key.enc.len() != enc_len || key.integ.len() != self.suite.integ_key_len() {
            return Err(SaParamsError::KeyLength {
                enc: key.enc.len(),
                integ: key.integ.len(),
            });
        }
        if self.ts_local.is_empty() || self.ts_remote.is_empty() {
            return Err(SaParamsError::NoSelectors);
        }
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err(SaParamsError::MixedTunnelFamilies);
        }
        let tunnel = TunnelEndpoints {
            local: self.local.ip(),
            remote: self.remote.ip(),
        };
        let mut p = SaParams::new(spi, self.suite, key.enc.clone(), key.integ.clone(), tunnel);
        p.esn = self.esn;
        p.replay_window = self
            .replay_window
            .clamp(*REPLAY_WINDOW.start(), *REPLAY_WINDOW.end());
        p.local_ts.clone_from(&self.ts_local);
        p.remote_ts.clone_from(&self.ts_remote);
        if self.udp_encap {
            let remote_port = match self.remote.port() {
                500 => NATT_PORT,
                port => port,
            };
            p.udp_encap = Some(UdpEncap {
                local_port: NATT_PORT,
                remote_port,
            });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipsec_core::crypto::Suite;

    fn child(udp_encap: bool, remote_port: u16) -> ChildSa {
        let suite = Suite::AES128_GCM16;
        let key = |b: u8| KeyMaterial::new(SecretBytes::new(vec![b; 20]), SecretBytes::default());
        ChildSa {
            conn: ConnId(3),
            spi_in: 0x1111,
            spi_out: 0x2222,
            suite,
            key_in: key(1),
            key_out: key(2),
            esn: true,
            ts_local: vec!["10.1.0.0/16".parse().unwrap()],
            ts_remote: vec!["10.2.0.0/16".parse().unwrap()],
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: SocketAddr::new("192.0.2.2".parse().unwrap(), remote_port),
            udp_encap,
            lifetime: Duration::from_secs(3600),
            replay_window: 10_000,
            rekey_of: None,
        }
    }

    #[test]
    fn both_directions_from_one_child() {
        let c = child(false, 500);
        let inb = c.sa_params(Direction::Inbound).unwrap();
        let out = c.sa_params(Direction::Outbound).unwrap();
        assert_eq!((inb.spi, out.spi), (0x1111, 0x2222));
        assert_eq!(inb.enc_key.as_bytes(), &[1; 20]);
        assert_eq!(out.enc_key.as_bytes(), &[2; 20]);
        assert!(inb.esn && out.esn);
        assert_eq!(inb.replay_window, 4096, "clamped");
        assert_eq!(inb.local_ts, c.ts_local);
        assert_eq!(inb.remote_ts, c.ts_remote);
        assert_eq!(inb.tunnel.remote, c.remote.ip());
        assert_eq!(inb.udp_encap, None);
        assert_eq!(inb.lifetime, ipsec_core::sa::Lifetime::default());
        let mut small = c.clone();
        small.replay_window = 0;
        let p = small.sa_params(Direction::Inbound).unwrap();
        assert_eq!(p.replay_window, 32);
    }

    #[test]
    fn nat_traversal_ports() {
        let p = child(true, 500).sa_params(Direction::Outbound).unwrap();
        assert_eq!(
            p.udp_encap,
            Some(UdpEncap {
                local_port: 4500,
                remote_port: 4500
            })
        );
        let p = child(true, 31_000).sa_params(Direction::Outbound).unwrap();
        assert_eq!(p.udp_encap.map(|u| u.remote_port), Some(31_000));
    }

    #[test]
    fn refuses_what_the_esp_layer_cannot_use() {
        let mut c = child(false, 500);
        c.key_out = KeyMaterial::new(SecretBytes::new(vec![0; 16]), SecretBytes::default());
        assert_eq!(
            c.sa_params(Direction::Outbound).err(),
            Some(SaParamsError::KeyLength { enc: 16, integ: 0 })
        );
        assert!(c.sa_params(Direction::Inbound).is_ok());
        c.ts_remote.clear();
        assert_eq!(
            c.sa_params(Direction::Inbound).err(),
            Some(SaParamsError::NoSelectors)
        );
        let mut c = child(false, 500);
        c.remote = "[2001:db8::2]:500".parse().unwrap();
        assert_eq!(
            c.sa_params(Direction::Inbound).err(),
            Some(SaParamsError::MixedTunnelFamilies)
        );
    }
}
