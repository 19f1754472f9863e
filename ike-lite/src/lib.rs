//! `ike-lite`: a sans-IO IKEv2 (RFC 7296) endpoint with pre-shared keys.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod crypto;
pub mod endpoint;
pub mod message;
pub mod proposal;
mod sa;
pub mod ts;

pub use config::{Config, Identity, PeerConfig, Psk, RetransmitPolicy};
pub use endpoint::{
    ApiError, AuthFailure, ChildDeleteReason, ChildSa, ConnId, DatagramError, DownReason, Endpoint,
    Event, IkeSaStats, KeyMaterial, Transmit,
};
