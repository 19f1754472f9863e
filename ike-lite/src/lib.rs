//! `ike-lite`: a sans-IO IKEv2 (RFC 7296) endpoint with pre-shared keys.
//!
//! [`Endpoint`] is driven like quinn-proto: feed every UDP payload received
//! on ports 500 and 4500 to [`Endpoint::handle_datagram`], call
//! [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] expires, send
//! what [`Endpoint::poll_transmit`] returns (its `src` tells which socket)
//! and install/remove ESP SAs as [`Endpoint::poll_event`] says.
//!
//! Modules: [`message`] (wire codec), [`proposal`] (algorithm strings and
//! selection), [`ts`] (traffic selectors), [`config`], [`endpoint`] (the
//! state machine's public face) and [`crypto`] (IKE cryptography).
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
    Event, IkeSaSecrets, IkeSaStats, KeyMaterial, Transmit,
};
