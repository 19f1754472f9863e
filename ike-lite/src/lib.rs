//! `ike-lite`: a sans-IO IKEv2 (RFC 7296) endpoint with pre-shared keys.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod crypto;
pub mod message;
pub mod proposal;
pub mod ts;
