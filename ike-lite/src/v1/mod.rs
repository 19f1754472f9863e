//! IKEv1 (RFC 2408 / RFC 2409): main mode with pre-shared keys, quick
//! mode with and without PFS, informational exchanges (DELETE, DPD,
//! INITIAL-CONTACT), NAT-T (RFC 3947). Aggressive mode is refused.
//!
//! Beside the IKEv2 state machine, not inside it: it shares the crate's
//! crypto (PRFs, DH groups), proposal syntax, configuration
//! ([`crate::PeerConfig`]) and the [`crate::Event`] / [`crate::ChildSa`]
//! types, so a driver of [`crate::Endpoint`] drives [`Endpoint`] the same
//! way. Modules: [`wire`] (ISAKMP codec), [`cbc`] (encrypted bodies and the
//! IV chain), [`keys`] (SKEYID, HASHes, KEYMAT).

pub mod cbc;
pub mod keys;
pub mod wire;
