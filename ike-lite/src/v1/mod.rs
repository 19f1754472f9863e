//! IKEv1 (RFC 2408 / RFC 2409): main mode with pre-shared keys, quick
//! mode with and without PFS, informational exchanges (DELETE, DPD,
//! INITIAL-CONTACT), NAT-T (RFC 3947). Aggressive mode is refused.
//!
//! Beside the IKEv2 state machine, not inside it: it shares the crate's
//! crypto (PRFs, DH groups), proposal syntax, configuration
//! ([`crate::PeerConfig`]) and the [`crate::Event`] / [`crate::ChildSa`]
//! types, so a driver of [`crate::Endpoint`] drives [`Endpoint`] the same
//! way. Modules: [`wire`] (ISAKMP codec), [`cbc`] (encrypted bodies and the
//! IV chain), [`keys`] (SKEYID, HASHes, KEYMAT), [`proposal`] (SA payloads
//! from the crate's proposal syntax, selection), [`ts`] (quick-mode IDs as
//! traffic selectors), the private `sa` (one ISAKMP SA: main mode),
//! `quick` (quick mode, IPsec SAs, rekey), `info` (DELETE, DPD) and
//! [`Endpoint`] (every ISAKMP SA; what spans SAs: phase-1 rekey,
//! INITIAL-CONTACT) and [`DualEndpoint`] (both versions behind one API, a
//! version per connection, datagrams dispatched by their header).

pub mod cbc;
mod dual;
mod endpoint;
mod info;
pub mod keys;
pub mod proposal;
mod quick;
mod sa;
pub mod ts;
pub mod wire;

pub use dual::{DualEndpoint, IkeVersion};
pub use endpoint::Endpoint;
pub use quick::OUTBOUND_SWITCH_DELAY;
pub use sa::{IsakmpSaSecrets, VID_DPD, VID_NATT_RFC3947};

use crate::crypto::PrfError;
use core::fmt;
use wire::{Kind, WireError};

/// Why an IKEv1 datagram was dropped or an exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not an ISAKMP message (ESP or a keepalive on the NAT-T port).
    NotIsakmp,
    /// The message did not parse.
    Wire(WireError),
    /// No ISAKMP SA has these cookies.
    UnknownCookie,
    /// No connection is configured for the sender's address.
    NoMatchingPeer,
    /// Aggressive mode: refused, because with a pre-shared key it hands an
    /// observer a hash to crack offline (RFC 9395).
    AggressiveModeRefused,
    /// No acceptable proposal (or the peer's answer is not one of ours).
    NoProposalChosen,
    /// A required payload is missing.
    MissingPayload(Kind),
    /// The peer's Diffie-Hellman public value is invalid.
    BadKeyExchange,
    /// A HASH payload did not verify (wrong PSK or tampering).
    BadHash,
    /// The peer's identity is not the configured one.
    Authentication,
    /// Quick-mode selectors outside the configured ones.
    Unacceptable,
    /// The message is valid but not expected in this state.
    Unexpected,
    /// A PRF was refused (unsupported hash).
    Prf(PrfError),
    /// A new main mode (message 1) dropped unanswered by a flood limit
    /// (the sender's half-open SAs, all half-open SAs, or its length).
    Limited,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotIsakmp => f.write_str("not an ISAKMP message"),
            Error::Wire(e) => write!(f, "malformed ISAKMP message: {e}"),
            Error::UnknownCookie => f.write_str("unknown ISAKMP cookies"),
            Error::NoMatchingPeer => f.write_str("no IKEv1 connection for this peer address"),
            Error::AggressiveModeRefused => f.write_str(
                "IKEv1 aggressive mode refused (it exposes a PSK hash to offline cracking)",
            ),
            Error::NoProposalChosen => f.write_str("no acceptable proposal"),
            Error::MissingPayload(k) => write!(f, "missing {k:?} payload"),
            Error::BadKeyExchange => f.write_str("invalid key exchange value"),
            Error::BadHash => f.write_str("HASH does not verify"),
            Error::Authentication => f.write_str("peer identity not accepted"),
            Error::Unacceptable => f.write_str("traffic selectors not acceptable"),
            Error::Unexpected => f.write_str("message not expected in this state"),
            Error::Prf(e) => write!(f, "{e}"),
            Error::Limited => f.write_str("main mode message 1 dropped by a flood limit"),
        }
    }
}

impl std::error::Error for Error {}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Wire(e)
    }
}

impl From<PrfError> for Error {
    fn from(e: PrfError) -> Self {
        Error::Prf(e)
    }
}
