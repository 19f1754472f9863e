//! The status report: the engine's view of every tunnel, merged with the
//! data path's counters that the shell passes in.

use std::collections::BTreeMap;
use std::time::Instant;

use super::counters::ProcessCounters;
use super::log::IkeSpi;
use super::{Engine, TunnelId};
use crate::control::{IkeOutcomes, IkeStatus, StatusReport, TunnelRole, TunnelStatus};

/// A tunnel's data-path counters (the shell reads them from the data path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Inner bytes received (decrypted).
    pub bytes_in: u64,
    /// Inner bytes sent (encrypted).
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Drops by reason name.
    pub drops: BTreeMap<String, u64>,
}

impl Engine {
    /// The process-wide counters (see [`super::counters`]).
    pub fn process_counters(&self) -> ProcessCounters {
        ProcessCounters {
            ike_sas: self.ike.ike_sa_count() as u64,
            ike_received: self.ike_counters.received.clone(),
            ike_sent: self.ike_counters.sent.clone(),
            flood: self.ike.endpoint_stats(),
        }
    }

    /// The status document at `now`, with each tunnel's counters from
    /// `counters`.
    pub fn status(
        &self,
        now: Instant,
        counters: &mut dyn FnMut(TunnelId) -> TunnelCounters,
    ) -> StatusReport {
        let mut tunnels = Vec::with_capacity(self.tunnels.len());
        for (i, t) in self.tunnels.iter().enumerate().filter(|(_, t)| !t.removed) {
            let role = match self.groups.iter().find(|g| g.members.contains(&i)) {
                Some(g) if g.active_conn() != i => TunnelRole::Standby,
                _ => TunnelRole::Active,
            };
            let c = counters(t.id);
            let next_rekey = t
                .current
                .and_then(|c| self.ike.child_rekey_at(t.conn, c.spi_in))
                .map(|at| at.saturating_duration_since(now).as_secs());
            let ike_spis = self.ike.ike_spis(t.conn);
            tunnels.push(TunnelStatus {
                name: t.plan.name.clone(),
                state: t.state(),
                role,
                local_addr: t.plan.local,
                remote_addr: t.peer(),
                interface: t.plan.ifname.clone(),
                carrier: t.plan.route_based.then_some(t.link_up),
                // IKEv1 says so: `ikev1 main aes128-sha1-modp1024`.
                ike_algorithms: self
                    .ike
                    .ike_algorithms(t.conn)
                    .map(|a| match t.plan.ike_version {
                        ike_lite::IkeVersion::V1 => format!("ikev1 main {}", a.name()),
                        ike_lite::IkeVersion::V2 => a.name(),
                    }),
                esp_algorithms: t.current.map(|c| c.suite.name().to_string()),
                ike_spi_i: ike_spis.map(|(i, _)| IkeSpi(i).to_string()),
                ike_spi_r: ike_spis.map(|(_, r)| IkeSpi(r).to_string()),
                spi_in: t.current.map(|c| c.spi_in),
                spi_out: t.current.map(|c| c.spi_out),
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                packets_in: c.packets_in,
                packets_out: c.packets_out,
                drops: c.drops,
                last_rekey_secs: t
                    .last_rekey
                    .map(|r| now.saturating_duration_since(r).as_secs()),
                next_rekey_secs: next_rekey,
                child_rekeys: t.child_rekeys,
                ike_rekeys: t.ike_rekeys,
                dpd_failures: t.dpd_failures,
                established_secs: t
                    .established_at
                    .map(|at| now.saturating_duration_since(at).as_secs()),
                last_error: t.last_error.clone(),
            });
        }
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels,
            ike: ike_status(&self.ike.endpoint_stats()),
        }
    }
}

/// The `ike` section of the status document from the endpoint's counters.
pub fn ike_status(s: &ike_lite::EndpointStats) -> IkeStatus {
    let d = &s.init_dropped;
    let init_dropped = [
        ("blocked_source", d.blocked_source),
        ("half_open_limit", d.half_open_limit),
        ("bad_cookie", d.bad_cookie),
        ("oversized", d.oversized),
        ("malformed", d.malformed),
    ];
    let r = &s.received;
    let received = [
        ("ike_sa_init", r.ike_sa_init),
        ("ike_auth", r.ike_auth),
        ("create_child_sa", r.create_child_sa),
        ("informational", r.informational),
        ("other", r.other),
    ];
    IkeStatus {
        half_open: s.half_open,
        blocked_sources: s.blocked_sources,
        cookies_sent: s.cookies_sent,
        cookies_verified: s.cookies_verified,
        half_open_expired: s.half_open_expired,
        init_dropped: init_dropped
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        received: received
            .into_iter()
            .map(|(k, o)| {
                let o = IkeOutcomes {
                    handled: o.handled,
                    refused: o.refused,
                    dropped: o.dropped,
                };
                (k.to_string(), o)
            })
            .collect(),
        received_unparsable: r.unparsable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_section_carries_every_counter() {
        let mut s = ike_lite::EndpointStats {
            half_open: 7,
            blocked_sources: 2,
            cookies_sent: 1000,
            cookies_verified: 3,
            half_open_expired: 9,
            ..Default::default()
        };
        s.init_dropped.blocked_source = 4;
        s.init_dropped.bad_cookie = 1;
        s.received.ike_sa_init.refused = 1000;
        s.received.ike_auth.handled = 3;
        s.received.unparsable = 5;
        let i = ike_status(&s);
        assert_eq!(
            (
                i.half_open,
                i.blocked_sources,
                i.cookies_sent,
                i.cookies_verified
            ),
            (7, 2, 1000, 3)
        );
        assert_eq!(i.half_open_expired, 9);
        assert_eq!(i.init_dropped["blocked_source"], 4);
        assert_eq!(i.init_dropped["bad_cookie"], 1);
        assert_eq!(i.init_dropped.len(), 5);
        assert_eq!(i.received["ike_sa_init"].refused, 1000);
        assert_eq!(i.received["ike_auth"].handled, 3);
        assert_eq!(i.received_unparsable, 5);
        let text = crate::control::format_status(&crate::control::StatusReport {
            version: "t".into(),
            pid: 1,
            uptime_secs: 0,
            tunnels: Vec::new(),
            ike: i,
        });
        assert!(
            text.contains("ike: 7 half-open, 2 blocked sources, cookies 1000 sent / 3 verified"),
            "{text}"
        );
        assert!(text.contains("blocked_source 4"), "{text}");
        assert!(text.contains("ike_sa_init 0/1000/0"), "{text}");
    }
}
