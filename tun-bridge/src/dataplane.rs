//! The data path of all tunnels (one ipsec-core [`DataPath`]) and the
//! bookkeeping that carries out the engine's [`SaAction`]s on it: each
//! tunnel's SPD entries, inbound SAs, outbound SAs kept by SPI until removed
//! (so a switch back to an older SA keeps its sequence numbers) and the
//! selected one. Pure: no IO, no clock; the per-packet work goes through
//! [`DataPlane::datapath`], which also resolves an inbound SPI to its
//! tunnel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ipsec_core::datapath::{DataPath, DataPathConfig, Event as DpEvent, TunnelStats};
use ipsec_core::sa::OutboundSa;
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};

use crate::engine::{DataPathEvent, SaAction, TunnelId};

/// Why an [`SaAction`] could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The action names a tunnel that was never added.
    UnknownTunnel(TunnelId),
    /// The SPD refused a policy.
    Policy(String),
    /// ipsec-core refused the SA parameters or binding.
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
pub struct DataPlane {
    dp: DataPath,
    /// Each tunnel's policies (ids are unique in the data path).
    policies: HashMap<TunnelId, Vec<PolicyId>>,
    next_policy: u32,
    /// Outbound SAs by SPI, selected or not.
    outbound: HashMap<u32, Arc<OutboundSa>>,
}

impl Default for DataPlane {
    fn default() -> Self {
        DataPlane::new()
    }
}

impl DataPlane {
    /// An empty data plane.
    pub fn new() -> DataPlane {
        DataPlane {
            dp: DataPath::new(DataPathConfig::default()),
            policies: HashMap::new(),
            next_policy: 1,
            outbound: HashMap::new(),
        }
    }

    /// The data path that carries every tunnel's packets.
    pub fn datapath(&self) -> &DataPath {
        &self.dp
    }

    /// Carries out one action of the engine.
    pub fn apply(&mut self, now: Instant, action: &SaAction) -> Result<(), ApplyError> {
        match action {
            SaAction::AddTunnel { tunnel, policies } => self.add_policies(*tunnel, policies)?,
            SaAction::ReplacePolicies { tunnel, policies } => {
                for id in self.policies.remove(tunnel).unwrap_or_default() {
                    self.dp.remove_policy(id);
                }
                self.add_policies(*tunnel, policies)?;
            }
            SaAction::RemoveTunnel { tunnel } => {
                self.policies.remove(tunnel);
                self.dp.remove_tunnel(*tunnel);
                self.outbound.retain(|_, sa| sa.tunnel_id() != *tunnel);
            }
            SaAction::Install {
                tunnel,
                inbound,
                outbound,
            } => {
                if !self.policies.contains_key(tunnel) {
                    return Err(ApplyError::UnknownTunnel(*tunnel));
                }
                let out =
                    OutboundSa::new(outbound, now).map_err(|e| ApplyError::Sa(e.to_string()))?;
                self.dp
                    .install_inbound(inbound, now)
                    .map_err(|e| ApplyError::Sa(e.to_string()))?;
                self.outbound.insert(outbound.spi, Arc::new(out));
            }
            SaAction::SelectOutbound { tunnel, spi_out } => {
                let ids = self
                    .policies
                    .get(tunnel)
                    .ok_or(ApplyError::UnknownTunnel(*tunnel))?;
                match spi_out {
                    Some(s) => {
                        let sa = self.outbound.get(s).ok_or(ApplyError::UnknownSpi(*s))?;
                        for &id in ids {
                            self.dp
                                .install_outbound_sa(id, Arc::clone(sa))
                                .map_err(|e| ApplyError::Sa(e.to_string()))?;
                        }
                    }
                    None => {
                        for &id in ids {
                            self.dp.remove_outbound(id);
                        }
                    }
                }
            }
            SaAction::Remove {
                tunnel,
                spi_in,
                spi_out,
            } => {
                if let Some(spi) = spi_in {
                    self.dp.remove_inbound(*spi);
                }
                let Some(sa) = spi_out.and_then(|s| self.outbound.remove(&s)) else {
                    return Ok(());
                };
                // Still selected (the engine selects another first when
                // there is one): stop sending on it.
                let ids = self.policies.get(tunnel).map(Vec::as_slice).unwrap_or(&[]);
                for &id in ids {
                    if self
                        .dp
                        .sad()
                        .outbound(id)
                        .is_some_and(|b| Arc::ptr_eq(b, &sa))
                    {
                        self.dp.remove_outbound(id);
                    }
                }
            }
        }
        Ok(())
    }

    fn add_policies(
        &mut self,
        tunnel: TunnelId,
        policies: &[(TrafficSelector, TrafficSelector)],
    ) -> Result<(), ApplyError> {
        let mut ids = Vec::with_capacity(policies.len());
        for (local, remote) in policies {
            let id = PolicyId(self.next_policy);
            self.dp
                .add_policy(Policy {
                    id,
                    priority: 100,
                    local: *local,
                    remote: *remote,
                    action: Action::Protect,
                    tunnel,
                })
                .map_err(|e| ApplyError::Policy(e.to_string()))?;
            self.next_policy += 1;
            ids.push(id);
        }
        self.policies.entry(tunnel).or_default().extend(ids);
        Ok(())
    }

    /// A tunnel's counters (SAs already removed included).
    pub fn counters(&self, tunnel: TunnelId) -> TunnelStats {
        self.dp.tunnel_stats(tunnel)
    }

    /// Earliest time-based lifetime over all SAs.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.dp.next_timeout()
    }

    /// Fires the time-based lifetimes due at `now` (events follow).
    pub fn handle_timeout(&self, now: Instant) {
        self.dp.handle_timeout(now);
    }

    /// Next event of the data path, for the engine.
    pub fn poll_event(&self) -> Option<DataPathEvent> {
        while let Some(ev) = self.dp.poll_event() {
            match ev {
                DpEvent::Expired {
                    spi,
                    direction,
                    kind,
                    tunnel,
                } => {
                    return Some(DataPathEvent::Expired {
                        tunnel,
                        spi,
                        direction,
                        kind,
                    })
                }
                DpEvent::Acquire { tunnel, .. } => return Some(DataPathEvent::Acquire { tunnel }),
                _ => {}
            }
        }
        None
    }
}
