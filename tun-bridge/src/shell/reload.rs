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
        let mut opened: HashMap<String, TunDev> = HashMap::new();
        for plan in &mut plans {
            setup::adapt_plan(&self.socks, plan);
            let current = self
                .engine
                .tunnel_id(&plan.name)
                .and_then(|id| self.tun_dev(id.0 as usize));
            if current.is_some_and(|d| d.tun.name() == plan.ifname) {
                continue;
            }
            let dev = setup::open_tun(plan, &self.tuning, self.routes.netlink())
                .map_err(|e| format!("conn {}: {e}", plan.name))?;
            opened.insert(plan.name.clone(), dev);
        }
        let added = plans
            .iter()
            .filter(|p| self.engine.tunnel_id(&p.name).is_none())
            .count();
        if self.tuns.len() + added > super::MAX_TUNNEL_IDS {
            return Err(format!(
                "tunnel ids used up ({} over this process's life): restart tun-bridge",
                super::MAX_TUNNEL_IDS
            ));
        }
        let reloaded = self.engine.reload(now, plans, groups)?;
        let mut closing = Vec::new();
        for &(id, change) in &reloaded.interfaces {
            let k = id.0 as usize;
            if self.tuns.len() <= k {
                self.tuns.resize_with(k + 1, || None);
            }
            match change {
                InterfaceChange::Open | InterfaceChange::Reopen => {
                    let Some(plan) = self.engine.plan(id) else {
                        continue;
                    };
                    let Some(dev) = opened.remove(&plan.name) else {
                        continue;
                    };
                    if let Some(old) = self.tuns[k].take() {
                        closing.push(old);
                    }
                    if let Err(e) = setup::register_tun(&dev, k, poller) {
                        warn!(conn = %plan.name, "reload: {e}");
                    }
                    self.tuns[k] = Some(dev);
                }
                InterfaceChange::Reconfigure => {
                    let (Some(plan), Some(dev)) = (self.engine.plan(id), self.tuns[k].as_mut())
                    else {
                        continue;
                    };
                    if let Err(e) = setup::reconfigure_tun(dev, plan, self.routes.netlink()) {
                        warn!(conn = %plan.name, "reload: interface: {e}");
                    }
                }
                InterfaceChange::Close => closing.extend(self.tuns[k].take()),
            }
        }
        // Routes are withdrawn while the interfaces still exist.
        if let Err(e) = self.execute(now) {
            warn!("reload: {e}");
        }
        for dev in closing {
            info!(tun = %dev.tun.name(), "tunnel interface removed");
            drop(dev);
        }
        Ok(reloaded.report)
    }
}
