//! `ike-lite`: a sans-IO IKEv2 (RFC 7296) endpoint with pre-shared keys.
//!
//! [`Endpoint`] is driven like quinn-proto: feed every UDP payload received
//! on ports 500 and 4500 to [`Endpoint::handle_datagram`], call
//! [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] expires, send
//! what [`Endpoint::poll_transmit`] returns (its `src` tells which socket)
//! and install/remove ESP SAs as [`Endpoint::poll_event`] says.
//!
//! Modules: [`message`] (wire codec), [`proposal`] (algorithm strings and
//! selection), [`ts`] (traffic selectors on the wire and their narrowing),
//! [`config`], [`endpoint`] (the state machine's public face, which owns
//! the IKE SAs), [`flood`] (IKE_SA_INIT admission: cookies, half-open
//! limits, the endpoint's counters), [`events`] (what it reports), [`child`] (a negotiated
//! Child SA and its conversion to `ipsec_core` parameters) and [`crypto`]
//! (IKE cryptography). The per-SA state machine is private (`sa`); it
//! depends on `events` and `child`, never on `endpoint`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod child;
pub mod config;
pub mod crypto;
pub mod endpoint;
pub mod events;
pub mod flood;
pub mod message;
pub mod proposal;
mod sa;
pub mod ts;
pub mod v1;

pub use child::{ChildSa, KeyMaterial, SaParamsError};
pub use config::{Config, ConnId, Identity, PeerConfig, Psk, RetransmitPolicy};
pub use endpoint::Endpoint;
pub use events::{
    ApiError, AuthFailure, ChildDeleteReason, DatagramError, DownReason, Event, IkeSaSecrets,
    IkeSaStats, Transmit,
};
pub use flood::{CookieMode, EndpointStats, FloodLimits};
pub use v1::{DualEndpoint, IkeVersion};
