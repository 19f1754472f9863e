//! The data path of all tunnels and the bookkeeping that carries out the
//! engine's [`SaAction`]s on it: SPD entries per tunnel, inbound SAs,
//! outbound SAs kept by SPI until removed (so a switch back to an older SA
//! keeps its sequence numbers), the selected outbound SA, per-tunnel
//! counters that survive SA removal, and data-path events tagged with
//! their tunnel. Pure: no IO, no clock; the per-packet work goes through
//! [`DataPlane::datapath`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ipsec_core::datapath::{DataPath, DataPathConfig, Event as DpEvent};
use ipsec_core::sa::{DropReason, OutboundSa, Stats};
use ipsec_core::spd::{Action, Policy, PolicyId};

use crate::engine::{DataPathEvent, SaAction, TunnelId};

/// One tunnel's data path.
struct TunnelPath {
    dp: DataPath,
    policies: Vec<PolicyId>,
    /// Drops counted by SAs already removed.
    retired_drops: [u64; DropReason::COUNT],
}

/// Counters of one tunnel (SAs already removed included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathCounters {
    /// Decrypted packets and bytes.
    pub inbound: Stats,
    /// Encrypted packets and bytes.
    pub outbound: Stats,
    /// Drops by [`DropReason::index`], both directions.
    pub drops: [u64; DropReason::COUNT],
}

/// Why an [`SaAction`] could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The action names a tunnel that was never added.
    UnknownTunnel(TunnelId),
    /// The SPD refused a policy.
    Policy(String),
    /// ipsec-core refused the SA parameters.
    Sa(String),
    /// `SelectOutbound` named an SA that is not installed.
    UnknownSpi(u32),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::UnknownTunnel(t) => write!(f, "unknown tunnel {}", t.0),
            ApplyError::Policy(e) => write!(f, "policy: {e}"),
            ApplyError::Sa(e) => write!(f, "SA: {e}"),
            ApplyError::UnknownSpi(s) => write!(f, "no installed outbound SA {s:08x}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// See the module documentation.
#[derive(Default)]
pub struct DataPlane {
    tunnels: Vec<Option<TunnelPath>>,
    /// Inbound SPI -> tunnel.
    by_spi: HashMap<u32, TunnelId>,
    /// Outbound SAs by SPI, selected or not, with their tunnel.
    outbound: HashMap<u32, (TunnelId, Arc<OutboundSa>)>,
}

fn add_drops(into: &mut [u64; DropReason::COUNT], from: &[u64; DropReason::COUNT]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

impl DataPlane {
    /// An empty data plane.
    pub fn new() -> DataPlane {
        DataPlane::default()
    }

    fn path(&self, t: TunnelId) -> Option<&TunnelPath> {
        self.tunnels.get(t.0 as usize)?.as_ref()
    }

    fn path_mut(&mut self, t: TunnelId) -> Result<&mut TunnelPath, ApplyError> {
        self.tunnels
            .get_mut(t.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(ApplyError::UnknownTunnel(t))
    }

    /// The data path that carries `tunnel`'s packets.
    pub fn datapath(&self, tunnel: TunnelId) -> Option<&DataPath> {
        self.path(tunnel).map(|p| &p.dp)
    }

    /// The tunnel an inbound SPI belongs to.
    pub fn tunnel_of_spi(&self, spi: u32) -> Option<TunnelId> {
        self.by_spi.get(&spi).copied()
    }

    /// Carries out one action of the engine.
    pub fn apply(&mut self, now: Instant, action: &SaAction) -> Result<(), ApplyError> {
        match action {
            SaAction::AddTunnel { tunnel, policies } => {
                let mut dp = DataPath::new(DataPathConfig::default());
                let mut ids = Vec::with_capacity(policies.len());
                for (k, (local, remote)) in policies.iter().enumerate() {
                    let id = PolicyId(k as u32 + 1);
                    dp.add_policy(Policy {
                        id,
                        priority: 100,
                        local: *local,
                        remote: *remote,
                        action: Action::Protect,
                    })
                    .map_err(|e| ApplyError::Policy(format!("{e:?}")))?;
                    ids.push(id);
                }
                let i = tunnel.0 as usize;
                if self.tunnels.len() <= i {
                    self.tunnels.resize_with(i + 1, || None);
                }
                self.tunnels[i] = Some(TunnelPath {
                    dp,
                    policies: ids,
                    retired_drops: [0; DropReason::COUNT],
                });
            }
            SaAction::Install {
                tunnel,
                inbound,
                outbound,
            } => {
                let out = Arc::new(
                    OutboundSa::new(outbound, now).map_err(|e| ApplyError::Sa(e.to_string()))?,
                );
                let p = self.path_mut(*tunnel)?;
                p.dp.install_inbound(inbound, now)
                    .map_err(|e| ApplyError::Sa(e.to_string()))?;
                self.by_spi.insert(inbound.spi, *tunnel);
                self.outbound.insert(outbound.spi, (*tunnel, out));
            }
            SaAction::SelectOutbound { tunnel, spi_out } => {
                let sa = match spi_out {
                    Some(s) => Some(
                        self.outbound
                            .get(s)
                            .map(|(_, sa)| Arc::clone(sa))
                            .ok_or(ApplyError::UnknownSpi(*s))?,
                    ),
                    None => None,
                };
                let p = self.path_mut(*tunnel)?;
                for &id in &p.policies {
                    match &sa {
                        Some(sa) => p.dp.install_outbound_sa(id, Arc::clone(sa)),
                        None => p.dp.remove_outbound(id),
                    };
                }
            }
            SaAction::Remove {
                tunnel,
                spi_in,
                spi_out,
            } => {
                let out = spi_out
                    .and_then(|s| self.outbound.remove(&s))
                    .map(|(_, sa)| sa);
                if let Some(spi_in) = spi_in {
                    if self.by_spi.get(spi_in) == Some(tunnel) {
                        self.by_spi.remove(spi_in);
                    }
                }
                let p = self.path_mut(*tunnel)?;
                if let Some(sa) = spi_in.and_then(|s| p.dp.remove_inbound(s)) {
                    add_drops(&mut p.retired_drops, &sa.stats().drops);
                }
                if let Some(sa) = out {
                    // Still selected (the engine selects another first
                    // when there is one): stop sending on it.
                    let bound = p
                        .policies
                        .first()
                        .and_then(|&id| p.dp.sad().outbound(id))
                        .is_some_and(|b| Arc::ptr_eq(b, &sa));
                    if bound {
                        for &id in &p.policies {
                            p.dp.remove_outbound(id);
                        }
                    }
                    add_drops(&mut p.retired_drops, &sa.stats().drops);
                }
            }
        }
        Ok(())
    }

    /// A tunnel's counters.
    pub fn counters(&self, tunnel: TunnelId) -> PathCounters {
        let Some(p) = self.path(tunnel) else {
            return PathCounters {
                inbound: Stats::default(),
                outbound: Stats::default(),
                drops: [0; DropReason::COUNT],
            };
        };
        let (inbound, outbound) = (p.dp.inbound_stats(), p.dp.outbound_stats());
        let mut drops = p.retired_drops;
        add_drops(&mut drops, &inbound.drops);
        add_drops(&mut drops, &outbound.drops);
        for sa in p.dp.sad().inbound_sas() {
            add_drops(&mut drops, &sa.stats().drops);
        }
        for (_, sa) in self.outbound.values().filter(|(t, _)| *t == tunnel) {
            add_drops(&mut drops, &sa.stats().drops);
        }
        PathCounters {
            inbound,
            outbound,
            drops,
        }
    }

    /// Earliest time-based lifetime over all SAs.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.tunnels
            .iter()
            .flatten()
            .filter_map(|p| p.dp.next_timeout())
            .min()
    }

    /// Fires the time-based lifetimes due at `now` (events follow).
    pub fn handle_timeout(&self, now: Instant) {
        for p in self.tunnels.iter().flatten() {
            if p.dp.next_timeout().is_some_and(|d| d <= now) {
                p.dp.handle_timeout(now);
            }
        }
    }

    /// Next event of any tunnel's data path.
    pub fn poll_event(&self) -> Option<DataPathEvent> {
        for (i, p) in self.tunnels.iter().enumerate() {
            let Some(p) = p else { continue };
            let tunnel = TunnelId(i as u32);
            while let Some(ev) = p.dp.poll_event() {
                match ev {
                    DpEvent::Expired {
                        spi,
                        direction,
                        kind,
                    } => {
                        return Some(DataPathEvent::Expired {
                            tunnel,
                            spi,
                            direction,
                            kind,
                        })
                    }
                    DpEvent::Acquire { .. } => return Some(DataPathEvent::Acquire { tunnel }),
                    _ => {}
                }
            }
        }
        None
    }
}
