//! Reload in the IO shell: reads the configuration again, opens what the
//! new plans need before anything changes (sockets on new local
//! addresses, TUNs of added connections or new interface names), hands the
//! plans to the engine ([`crate::engine::Engine::reload`], which decides),
//! then carries out its verdict on the interfaces. A configuration error,
//! or an interface that cannot be opened, changes nothing.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use super::setup::{self, TunDev};
use super::Shell;
use crate::control::ReloadReport;
use crate::engine::reload::InterfaceChange;
use crate::engine::TunnelId;
use crate::runtime::{self, Planned};
use crate::sys::poll::Poller;

impl Shell {
    /// SIGHUP: a reload whose outcome goes to the log.
    pub(super) fn reload_logged(&mut self, now: Instant, poller: &Poller) {
        info!("SIGHUP: reloading the configuration");
        match self.reload(now, poller) {
            Ok(r) => info!(
                kept = ?r.kept,
                changed = ?r.changed.iter().map(|c| format!("{} ({})", c.name, c.how)).collect::<Vec<_>>(),
                added = ?r.added,
                removed = ?r.removed,
                "reload done"
            ),
            Err(e) => {
                for line in e.lines() {
                    warn!("reload refused, nothing changed: {line}");
                }
            }
        }
    }

    /// Re-reads the configuration and applies it; the error text lists
    /// every `file:line` problem (one per line) and means nothing changed.
    pub(super) fn reload(&mut self, now: Instant, poller: &Poller) -> Result<ReloadReport, String> {
        let source = self
            .source
            .as_ref()
            .ok_or("this instance has no configuration files to reload")?;
        let Planned {
            mut plans,
            groups,
            warnings,
            // IKE flood limits are applied at start only (README).
            flood: _,
        } = runtime::load_plans(source).map_err(|e| e.to_string())?;
        for w in &warnings {
            warn!("reload: {w}");
        }
        setup::open_sockets(&mut self.socks, &plans, &self.tuning, poller)
            .map_err(|e| e.to_string())?;
        // New interfaces first: if one cannot be opened nothing changes.
        // An interface that is open already (a shared `ipsec-interface=`)
        // is joined, not opened again.
        let mut opened: HashMap<String, TunDev> = HashMap::new();
        for plan in &mut plans {
            setup::adapt_plan(&self.socks, plan);
            if self.slot_named(&plan.ifname).is_some() || opened.contains_key(&plan.ifname) {
                continue;
            }
            let dev = setup::open_tun(plan, &self.tuning, self.routes.netlink())
                .map_err(|e| format!("conn {}: {e}", plan.name))?;
            opened.insert(plan.ifname.clone(), dev);
        }
        if self.tuns.len() + opened.len() > super::MAX_INTERFACES {
            return Err(format!(
                "interface slots used up ({} over this process's life): restart tun-bridge",
                super::MAX_INTERFACES
            ));
        }
        let reloaded = self.engine.reload(now, plans, groups)?;
        // Interfaces a tunnel left: closed after the actions if no tunnel
        // uses them any more.
        let mut left = Vec::new();
        for &(id, change) in &reloaded.interfaces {
            match change {
                InterfaceChange::Open | InterfaceChange::Reopen => {
                    if let Some(old) = self.leave_interface(id) {
                        left.push(old);
                    }
                    let Some(plan) = self.engine.plan(id) else {
                        continue;
                    };
                    let slot = match self.slot_named(&plan.ifname) {
                        Some(i) => {
                            let Some(dev) = self.tuns[i].as_mut() else {
                                continue;
                            };
                            if let Err(e) = setup::share_tun(dev, id, plan, self.routes.netlink()) {
                                warn!(conn = %plan.name, "reload: interface: {e}");
                            }
                            i
                        }
                        None => {
                            let Some(mut dev) = opened.remove(&plan.ifname) else {
                                continue;
                            };
                            let i = self.tuns.len();
                            if let Err(e) = setup::register_tun(&dev, i, poller) {
                                warn!(conn = %plan.name, "reload: {e}");
                            }
                            dev.tunnels.push(id);
                            self.tuns.push(Some(dev));
                            i
                        }
                    };
                    self.links.set(id, slot, plan.route_based);
                }
                InterfaceChange::Reconfigure => {
                    let Some(plan) = self.engine.plan(id) else {
                        continue;
                    };
                    let Some(dev) = self
                        .links
                        .tun_of(id)
                        .and_then(|i| self.tuns.get_mut(i))
                        .and_then(Option::as_mut)
                    else {
                        continue;
                    };
                    if let Err(e) = setup::reconfigure_tun(dev, plan, self.routes.netlink()) {
                        warn!(conn = %plan.name, "reload: interface: {e}");
                    }
                }
                InterfaceChange::Close => left.extend(self.leave_interface(id)),
            }
        }
        // Routes are withdrawn while the interfaces still exist.
        if let Err(e) = self.execute(now) {
            warn!("reload: {e}");
        }
        for slot in left {
            if self.links.in_use(slot) {
                continue;
            }
            if let Some(dev) = self.tuns.get_mut(slot).and_then(Option::take) {
                info!(tun = %dev.tun.name(), "tunnel interface removed");
                drop(dev);
            }
        }
        Ok(reloaded.report)
    }

    /// The open interface named `name`.
    fn slot_named(&self, name: &str) -> Option<usize> {
        self.tuns
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.tun.name() == name))
    }

    /// Takes tunnel `id` off its interface; returns that interface.
    fn leave_interface(&mut self, id: TunnelId) -> Option<usize> {
        let slot = self.links.remove(id)?;
        if let Some(dev) = self.tuns.get_mut(slot).and_then(Option::as_mut) {
            dev.tunnels.retain(|&t| t != id);
        }
        Some(slot)
    }
}
