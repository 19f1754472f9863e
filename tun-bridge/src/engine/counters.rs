//! Process-wide counters the engine keeps for the metrics endpoint: IKE
//! messages received by exchange type and outcome, sent by exchange type.
//!
//! ike-lite's flood protection counters (half-open SAs, cookies, blocked
//! sources, dropped IKE_SA_INIT requests) come along as `flood`. A further
//! process counter is a field in [`ProcessCounters`], filled by
//! `Engine::process_counters`, and a family in `crate::metrics::families`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ike_lite::message::{ExchangeType, Header, HEADER_LEN};
use ike_lite::DatagramError;

/// A snapshot of the process counters (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessCounters {
    /// IKE SAs held by the endpoint (any state, half-open included).
    pub ike_sas: u64,
    /// IKE datagrams received, by (exchange, outcome) label values.
    pub ike_received: BTreeMap<(&'static str, &'static str), u64>,
    /// IKE messages sent (requests, responses, retransmissions), by
    /// exchange label value.
    pub ike_sent: BTreeMap<&'static str, u64>,
    /// The IKE endpoint's flood-protection counters.
    pub flood: ike_lite::EndpointStats,
}

/// The engine's running counts (cheap to update per IKE message).
#[derive(Debug, Default)]
pub(crate) struct IkeCounters {
    pub received: BTreeMap<(&'static str, &'static str), u64>,
    pub sent: BTreeMap<&'static str, u64>,
}

impl IkeCounters {
    /// Counts a received datagram with the endpoint's verdict `result`.
    pub fn received(
        &mut self,
        local: SocketAddr,
        natt_port: u16,
        datagram: &[u8],
        result: &Result<(), DatagramError>,
    ) {
        let ike = strip_marker(datagram, local.port() == natt_port);
        *self
            .received
            .entry((exchange_label(ike), outcome_label(result)))
            .or_default() += 1;
    }

    /// Counts a datagram the endpoint sends.
    pub fn sent(&mut self, payload: &[u8], non_esp_marker: bool) {
        *self
            .sent
            .entry(exchange_label(strip_marker(payload, non_esp_marker)))
            .or_default() += 1;
    }
}

fn strip_marker(d: &[u8], marker: bool) -> Option<&[u8]> {
    match (marker, d) {
        (false, _) => Some(d),
        (true, [0, 0, 0, 0, rest @ ..]) => Some(rest),
        (true, _) => None,
    }
}

/// The `exchange` label of an IKE message: its exchange type in lower
/// case, `other` for a type this build does not know, `none` when the
/// header does not parse.
pub fn exchange_label(msg: Option<&[u8]>) -> &'static str {
    let Some(h) = msg
        .filter(|m| m.len() >= HEADER_LEN)
        .and_then(|m| Header::parse(m).ok())
    else {
        return "none";
    };
    match h.exchange {
        ExchangeType::IKE_SA_INIT => "ike_sa_init",
        ExchangeType::IKE_AUTH => "ike_auth",
        ExchangeType::CREATE_CHILD_SA => "create_child_sa",
        ExchangeType::INFORMATIONAL => "informational",
        _ => "other",
    }
}

/// The `outcome` label of a received datagram.
pub fn outcome_label(r: &Result<(), DatagramError>) -> &'static str {
    match r {
        Ok(()) => "accepted",
        Err(DatagramError::NotIke) => "not_ike",
        Err(DatagramError::Parse(_)) => "malformed",
        Err(DatagramError::UnknownSpi) => "unknown_spi",
        Err(DatagramError::UnexpectedMessageId) => "unexpected_message_id",
        Err(DatagramError::Decrypt) => "integrity_failed",
        Err(DatagramError::Fragment(_)) => "fragment_refused",
        Err(DatagramError::Unexpected) => "unexpected",
        Err(DatagramError::Refused) => "refused",
        Err(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_messages_and_outcomes() {
        let mut m = vec![0u8; HEADER_LEN];
        m[8] = 1; // a non-zero initiator SPI
        m[17] = 0x20; // IKEv2
        m[18] = 34;
        m[24..28].copy_from_slice(&(HEADER_LEN as u32).to_be_bytes());
        assert_eq!(exchange_label(Some(&m)), "ike_sa_init");
        m[18] = 99;
        assert_eq!(exchange_label(Some(&m)), "other");
        assert_eq!(exchange_label(Some(&m[..10])), "none");
        assert_eq!(exchange_label(None), "none");
        let mut c = IkeCounters::default();
        let l: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        m[18] = 37;
        let mut marked = vec![0u8; 4];
        marked.extend_from_slice(&m);
        c.received(l, 4500, &marked, &Ok(()));
        c.received(l, 4500, &m, &Err(DatagramError::NotIke));
        c.sent(&marked, true);
        assert_eq!(c.received[&("informational", "accepted")], 1);
        assert_eq!(c.received[&("none", "not_ike")], 1);
        assert_eq!(c.sent["informational"], 1);
        assert_eq!(outcome_label(&Err(DatagramError::Refused)), "refused");
    }
}
