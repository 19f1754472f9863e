//! What the endpoint tells its driver, and the small types of its API:
//! [`Event`]s with their reasons, [`Transmit`]s, [`ConnId`], counters and
//! the error types of [`Endpoint`](crate::Endpoint)'s methods.
//!
//! Shared by the endpoint and the per-SA state machine, which produces the
//! events; neither of them is imported here.

use crate::child::ChildSa;
use crate::config::ConnId;
use crate::crypto::SecretBytes;
use crate::message::{FragError, NotifyType, ParseError};
use crate::proposal::IkeChoice;
use core::fmt;
use std::net::SocketAddr;

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Local address (and port: 500, or 4500 with NAT-T) to send from.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// The exact UDP payload. With `non_esp_marker` it already starts with
    /// the four zero bytes of RFC 3948; a NAT keepalive is the single byte
    /// `0xff`.
    pub payload: Vec<u8>,
    /// Whether this goes over the NAT-T port (UDP encapsulation).
    pub non_esp_marker: bool,
}

/// Why an IKE SA went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// Deleted by the peer.
    PeerDeleted,
    /// Deleted by [`Endpoint::delete`](crate::Endpoint::delete).
    LocalDelete,
    /// Hard lifetime reached without rekey.
    Expired,
    /// No answer to a request (retransmissions or DPD timed out).
    Timeout,
    /// Authentication failed (see [`Event::AuthenticationFailed`]).
    AuthFailed,
    /// The peer started over with INITIAL_CONTACT on a new IKE SA.
    InitialContact,
    /// The peer refused with this error notify during setup.
    Refused(NotifyType),
    /// The peer's answer was unusable (bad proposal, missing payloads, ...).
    Protocol,
}

/// Why authentication failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The peer's AUTH payload did not verify (wrong PSK).
    BadAuth,
    /// The peer answered AUTHENTICATION_FAILED (it rejected our AUTH).
    RejectedByPeer,
    /// The peer's identity matches no configured connection.
    UnknownIdentity,
    /// The peer used an authentication method other than PSK.
    UnsupportedMethod,
}

/// Why a Child SA was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildDeleteReason {
    /// Replaced by a rekeyed SA.
    Rekeyed,
    /// The peer deleted it.
    PeerDeleted,
    /// Deleted locally (API call or redundant collision result).
    LocalDelete,
    /// Hard lifetime reached.
    Expired,
    /// Its IKE SA went away.
    IkeSaGone,
}

/// Something the driver must act upon.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An IKE SA was authenticated.
    IkeSaUp {
        /// Connection.
        conn: ConnId,
        /// Initiator SPI.
        spi_i: u64,
        /// Responder SPI.
        spi_r: u64,
        /// Whether we initiated it.
        initiator: bool,
        /// Whether NAT-T is in use.
        udp_encap: bool,
        /// The negotiated algorithms ([`IkeChoice::name`] renders them).
        algorithms: IkeChoice,
    },
    /// An IKE SA was rekeyed (Child SAs moved to the new one).
    IkeSaRekeyed {
        /// Connection.
        conn: ConnId,
        /// SPIs (initiator, responder) of the old SA.
        old: (u64, u64),
        /// SPIs (initiator, responder) of the new SA.
        new: (u64, u64),
        /// The algorithms of the new SA.
        algorithms: IkeChoice,
    },
    /// The secrets of a new IKE SA (after [`Event::IkeSaUp`] or
    /// [`Event::IkeSaRekeyed`]), for decrypting captures. Only produced
    /// when [`Config::export_ike_keys`](crate::Config::export_ike_keys) is set.
    IkeSaSecrets(Box<IkeSaSecrets>),
    /// An IKE SA is gone (its Child SAs were reported deleted before).
    IkeSaDown {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: DownReason,
    },
    /// Install this Child SA. For a first SA both directions are usable at
    /// once; for a rekey (`rekey_of` set) accept inbound now but keep
    /// sending on the old SA until [`Event::ChildSaOutboundSwitched`].
    ChildSaEstablished(Box<ChildSa>),
    /// Send on `new_spi_out` from now on instead of `old_spi_out`.
    ChildSaOutboundSwitched {
        /// Connection.
        conn: ConnId,
        /// Outbound SPI of the old SA.
        old_spi_out: u32,
        /// Outbound SPI of the new SA.
        new_spi_out: u32,
    },
    /// Remove this Child SA (both directions).
    ChildSaDeleted {
        /// Connection.
        conn: ConnId,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
        /// Why.
        reason: ChildDeleteReason,
    },
    /// A Child SA could not be created; the IKE SA stays up.
    ChildSaFailed {
        /// Connection.
        conn: ConnId,
        /// The error notify (e.g. NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE).
        notify: NotifyType,
    },
    /// Authentication failed.
    AuthenticationFailed {
        /// Connection (the tentative one for a responder).
        conn: ConnId,
        /// Why.
        reason: AuthFailure,
    },
    /// The peer stopped answering (DPD or retransmission give-up).
    PeerDead {
        /// Connection.
        conn: ConnId,
    },
    /// The encryption key of a new IKEv1 ISAKMP SA, for decrypting
    /// captures (Wireshark's IKEv1 decryption table). Only produced when
    /// [`Config::export_ike_keys`](crate::Config::export_ike_keys) is set.
    IsakmpSaSecrets(Box<crate::v1::IsakmpSaSecrets>),
    /// NAT detection result of IKE_SA_INIT, when a NAT (or forced
    /// encapsulation) moves the SA to the NAT-T port.
    NatDetected {
        /// Connection.
        conn: ConnId,
        /// We are behind a NAT (we send keepalives).
        local_behind_nat: bool,
        /// The peer is behind a NAT.
        remote_behind_nat: bool,
    },
}

/// The keys of one IKE SA as Wireshark's "IKEv2 Decryption Table" needs
/// them (SPIs, SK_e and SK_a per direction, algorithms). Produced only when
/// [`Config::export_ike_keys`](crate::Config::export_ike_keys) is set; zeroized on drop, redacted `Debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeSaSecrets {
    /// Connection.
    pub conn: ConnId,
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Negotiated algorithms (`suite` tells the SK_e / SK_a algorithms).
    pub algorithms: IkeChoice,
    /// Encryption key initiator to responder (incl. the GCM salt).
    pub sk_ei: SecretBytes,
    /// Encryption key responder to initiator (incl. the GCM salt).
    pub sk_er: SecretBytes,
    /// Integrity key initiator to responder (empty for AES-GCM).
    pub sk_ai: SecretBytes,
    /// Integrity key responder to initiator (empty for AES-GCM).
    pub sk_ar: SecretBytes,
}

/// Per-IKE-SA counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IkeSaStats {
    /// Requests sent (first transmissions).
    pub requests_sent: u64,
    /// Request retransmissions.
    pub retransmits: u64,
    /// Responses sent (including retransmitted ones).
    pub responses_sent: u64,
    /// Valid messages received.
    pub messages_received: u64,
    /// Messages dropped (bad integrity, out of window, malformed).
    pub dropped: u64,
    /// Child SA rekeys completed.
    pub child_rekeys: u64,
    /// NAT keepalives sent.
    pub keepalives_sent: u64,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramError {
    /// Not an IKE message (ESP on the NAT-T port, a keepalive, too short).
    NotIke,
    /// The IKE message did not parse.
    Parse(ParseError),
    /// No IKE SA has this SPI.
    UnknownSpi,
    /// The message ID is outside the window, or a response matches no request.
    UnexpectedMessageId,
    /// The SK/SKF payload failed integrity or decryption.
    Decrypt,
    /// A fragment was refused.
    Fragment(FragError),
    /// The message is valid but not acceptable in the SA's state.
    Unexpected,
    /// An IKE_SA_INIT request was turned away (cookie, INVALID_KE, no
    /// proposal); an answer may have been queued.
    Refused,
    /// A new IKE_SA_INIT request was dropped unanswered by a flood limit
    /// (blocked source, half-open cap, oversized); see
    /// [`EndpointStats`](crate::EndpointStats).
    Limited,
    /// An IKEv1 message was dropped ([`crate::v1::DualEndpoint`]).
    V1(crate::v1::Error),
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::NotIke => f.write_str("not an IKE message"),
            DatagramError::Parse(e) => write!(f, "parse error: {e}"),
            DatagramError::UnknownSpi => f.write_str("unknown IKE SPI"),
            DatagramError::UnexpectedMessageId => f.write_str("unexpected message ID"),
            DatagramError::Decrypt => f.write_str("integrity check failed"),
            DatagramError::Fragment(e) => write!(f, "fragment refused: {e}"),
            DatagramError::Unexpected => f.write_str("message not expected in this state"),
            DatagramError::Refused => f.write_str("request refused"),
            DatagramError::Limited => f.write_str("IKE_SA_INIT dropped by a flood limit"),
            DatagramError::V1(e) => write!(f, "IKEv1: {e}"),
        }
    }
}

impl std::error::Error for DatagramError {}

/// Why an API call could not be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// No connection with this id.
    UnknownConn,
    /// The connection has no established IKE SA.
    NotEstablished,
    /// No Child SA with this inbound SPI.
    UnknownChild,
    /// A configured proposal cannot be used (e.g. unsupported DH group).
    BadConfig,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiError::UnknownConn => "unknown connection",
            ApiError::NotEstablished => "no established IKE SA",
            ApiError::UnknownChild => "unknown Child SA",
            ApiError::BadConfig => "unusable configuration",
        })
    }
}

impl std::error::Error for ApiError {}
