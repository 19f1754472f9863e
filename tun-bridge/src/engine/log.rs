//! The engine's log lines of tunnel events: one line per IKE event (IKE SA
//! up, rekeyed, down; Child SA installed, rekeyed, deleted; DPD verdict;
//! authentication failure; give-up; reload changes), each with the same
//! field names so that a JSON log can be filtered on them:
//!
//! | field | value |
//! |---|---|
//! | `conn` | the connection's name |
//! | `peer` | the peer's address, as `status` shows it |
//! | `ike_spi_i`, `ike_spi_r` | the IKE SA's SPIs, `0x` and 16 hex digits, as `status` shows them |
//! | `spi_in`, `spi_out` | the Child SA's ESP SPIs, `0x` and 8 hex digits, as `status` shows them |
//! | `reason` | why, as a `snake_case` word ([`down_reason`], ...) |
//!
//! Only `tracing` macros: the engine stays free of IO (the subscriber the
//! binary installs writes the lines). No key material is ever a field.

use core::fmt;

use ike_lite::{AuthFailure, ChildDeleteReason, DownReason};

/// An ESP SPI as `status` prints it: `0x` and 8 hex digits.
#[derive(Clone, Copy)]
pub(crate) struct EspSpi(pub u32);

impl fmt::Display for EspSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// An IKE SPI as `status` prints it: `0x` and 16 hex digits.
#[derive(Clone, Copy)]
pub(crate) struct IkeSpi(pub u64);

impl fmt::Display for IkeSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

/// Logs an event of tunnel `$t` at `$level` with its `conn`, `peer` and,
/// while it has an established IKE SA, `ike_spi_i` / `ike_spi_r`, then the
/// given fields and message (the syntax of `tracing::info!`).
macro_rules! tunnel_event {
    ($level:ident, $t:expr, $($rest:tt)+) => {{
        let t: &$crate::engine::tunnel::Tunnel = $t;
        match t.ike_spis {
            Some((i, r)) => tracing::$level!(
                conn = %t.plan.name, peer = %t.peer(),
                ike_spi_i = %$crate::engine::log::IkeSpi(i),
                ike_spi_r = %$crate::engine::log::IkeSpi(r),
                $($rest)+
            ),
            None => tracing::$level!(conn = %t.plan.name, peer = %t.peer(), $($rest)+),
        }
    }};
}
pub(crate) use tunnel_event;

/// Why an IKE SA went down, as a `reason` field.
pub(crate) fn down_reason(r: DownReason) -> String {
    match r {
        DownReason::PeerDeleted => "peer_delete".into(),
        DownReason::LocalDelete => "local_delete".into(),
        DownReason::Expired => "expired".into(),
        DownReason::Timeout => "no_answer".into(),
        DownReason::AuthFailed => "auth_failed".into(),
        DownReason::InitialContact => "initial_contact".into(),
        DownReason::Refused(n) => format!("refused_{}", snake(&format!("{n:?}"))),
        DownReason::Protocol => "protocol_error".into(),
        other => snake(&format!("{other:?}")),
    }
}

/// Why a Child SA was deleted, as a `reason` field.
pub(crate) fn child_delete_reason(r: ChildDeleteReason) -> String {
    match r {
        ChildDeleteReason::Rekeyed => "rekeyed".into(),
        ChildDeleteReason::PeerDeleted => "peer_delete".into(),
        ChildDeleteReason::LocalDelete => "local_delete".into(),
        ChildDeleteReason::Expired => "expired".into(),
        ChildDeleteReason::IkeSaGone => "ike_sa_gone".into(),
        other => snake(&format!("{other:?}")),
    }
}

/// Why authentication failed, as a `reason` field.
pub(crate) fn auth_failure(r: AuthFailure) -> String {
    match r {
        AuthFailure::BadAuth => "bad_auth".into(),
        AuthFailure::RejectedByPeer => "rejected_by_peer".into(),
        AuthFailure::UnknownIdentity => "unknown_identity".into(),
        AuthFailure::UnsupportedMethod => "unsupported_method".into(),
        other => snake(&format!("{other:?}")),
    }
}

/// A `Debug` name as a field value: `NoProposalChosen` and
/// `NO_PROPOSAL_CHOSEN` -> `no_proposal_chosen`, `NotifyType(42)` ->
/// `notify_type_42`.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            if ch.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
            prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_render_as_status_prints_them() {
        assert_eq!(EspSpi(0xc123_4567).to_string(), "0xc1234567");
        assert_eq!(EspSpi(0x1f).to_string(), "0x0000001f");
        assert_eq!(
            IkeSpi(0x0123_4567_89ab_cdef).to_string(),
            "0x0123456789abcdef"
        );
        assert_eq!(IkeSpi(1).to_string(), "0x0000000000000001");
    }

    #[test]
    fn reasons_are_snake_case_words() {
        assert_eq!(down_reason(DownReason::PeerDeleted), "peer_delete");
        assert_eq!(down_reason(DownReason::Timeout), "no_answer");
        assert_eq!(
            down_reason(DownReason::Refused(
                ike_lite::message::NotifyType::NO_PROPOSAL_CHOSEN
            )),
            "refused_no_proposal_chosen"
        );
        assert_eq!(
            child_delete_reason(ChildDeleteReason::IkeSaGone),
            "ike_sa_gone"
        );
        assert_eq!(
            auth_failure(AuthFailure::RejectedByPeer),
            "rejected_by_peer"
        );
    }

    #[test]
    fn snake_handles_debug_shapes() {
        assert_eq!(snake("NoProposalChosen"), "no_proposal_chosen");
        assert_eq!(snake("NO_PROPOSAL_CHOSEN"), "no_proposal_chosen");
        assert_eq!(snake("NotifyType(42)"), "notify_type_42");
        assert_eq!(snake("TsUnacceptable"), "ts_unacceptable");
        assert_eq!(snake(""), "");
    }
}
