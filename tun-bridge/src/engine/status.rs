//! The status report: the engine's view of every tunnel, merged with the
//! data path's counters that the shell passes in.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Engine, TunnelId};
use crate::control::{StatusReport, TunnelRole, TunnelStatus};

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
    /// The status document at `now`, with each tunnel's counters from
    /// `counters`.
    pub fn status(
        &self,
        now: Instant,
        counters: &mut dyn FnMut(TunnelId) -> TunnelCounters,
    ) -> StatusReport {
        let mut tunnels = Vec::with_capacity(self.tunnels.len());
        for (i, t) in self.tunnels.iter().enumerate() {
            let role = match self.groups.iter().find(|g| g.members.contains(&i)) {
                Some(g) if g.active_conn() != i => TunnelRole::Standby,
                _ => TunnelRole::Active,
            };
            let c = counters(t.id);
            let next_rekey = t
                .current
                .and_then(|c| self.ike.child_rekey_at(t.conn, c.spi_in))
                .map(|at| at.saturating_duration_since(now).as_secs());
            tunnels.push(TunnelStatus {
                name: t.plan.name.clone(),
                state: t.state(),
                role,
                local_addr: t.plan.local,
                remote_addr: t.remote_seen.unwrap_or(t.plan.remote),
                // IKEv1 says so: `ikev1 main aes128-sha1-modp1024`.
                ike_algorithms: self
                    .ike
                    .ike_algorithms(t.conn)
                    .map(|a| match t.plan.ike_version {
                        ike_lite::IkeVersion::V1 => format!("ikev1 main {}", a.name()),
                        ike_lite::IkeVersion::V2 => a.name(),
                    }),
                esp_algorithms: t.current.map(|c| c.suite.name().to_string()),
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
                last_error: t.last_error.clone(),
            });
        }
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels,
        }
    }
}
