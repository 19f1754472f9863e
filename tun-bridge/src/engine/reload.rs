//! Reload (`tun-bridge reload`, SIGHUP): the engine's decision of what a
//! new configuration means for the running tunnels, matched by connection
//! name.
//!
//! * Same effective settings ([`diff`] is empty): kept, nothing touched
//!   (same IKE and Child SAs, same SPIs, no packet lost).
//! * Changed: the new settings reach ike-lite at once
//!   ([`ike_lite::Endpoint::replace_peer`]); then, by the strongest change
//!   ([`PlanDiff`]): timers, policy, routes and the interface apply in
//!   place; new ESP settings by a Child SA rekey and new IKE settings by an
//!   IKE SA rekey (both make-before-break); new addresses, identities,
//!   PSK, selectors, encapsulation or interface, and IKE proposals without
//!   the established SA's Diffie-Hellman group (an IKE rekey's KE payload
//!   uses it), by a restart (DELETE, then a new IKE SA per `auto=`).
//! * Removed: DELETE sent, SAs and SPD entries removed, the connection
//!   retired in ike-lite (it answers no new request), its routes withdrawn.
//! * Added: SPD entries, routes, and started per `auto=`.

use std::collections::HashSet;
use std::time::Instant;

use subtle::ConstantTimeEq;

use super::failover::Group;
use super::log::{snake, tunnel_event};
use super::tunnel::Tunnel;
use super::{lifecycle, Action, Engine, SaAction, TunnelId};
use crate::config::values::IpNet;
use crate::control::{ChangedConn, ReloadReport};
use crate::runtime::plan::{ConnPlan, StartMode};

/// What the shell does with a tunnel's interface after a reload (before it
/// carries out the engine's actions; closes after them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceChange {
    /// A new tunnel: open its TUN.
    Open,
    /// A removed tunnel: close its TUN (the kernel removes the interface).
    Close,
    /// MTU or inside addresses changed: set them on the open TUN.
    Reconfigure,
    /// The interface name changed: close the old TUN, open the new one.
    Reopen,
}

/// The result of [`Engine::reload`].
#[derive(Debug)]
pub struct Reloaded {
    /// Kept, changed, added and removed connections, for the operator.
    pub report: ReloadReport,
    /// Interface work for the shell, by tunnel.
    pub interfaces: Vec<(TunnelId, InterfaceChange)>,
}

/// How the settings of one connection differ between two plans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanDiff {
    /// The names of the settings that differ (ipsec.conf's words).
    pub settings: Vec<&'static str>,
    /// The IKE SA must be replaced (new IKE proposals or lifetime).
    pub ike_rekey: bool,
    /// The Child SA must be replaced (new ESP proposals, lifetime, window).
    pub child_rekey: bool,
    /// The tunnel must be brought down and up again.
    pub restart: bool,
    /// The interface's MTU or inside addresses changed.
    pub interface: bool,
    /// The interface name changed.
    pub reopen: bool,
}

impl PlanDiff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// How the change is applied, for the report.
    pub fn how(&self) -> String {
        if self.restart {
            return "restart".into();
        }
        let v: Vec<&str> = [
            (self.ike_rekey, "ike rekey"),
            (self.child_rekey, "child rekey"),
        ]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
        .collect();
        if v.is_empty() {
            "in place".into()
        } else {
            v.join(" + ")
        }
    }
}

#[derive(Clone, Copy)]
enum Effect {
    InPlace,
    Interface,
    ChildRekey,
    IkeRekey,
    Restart,
    Reopen,
}

/// The difference between the running plan `old` and the reloaded `new`
/// of the same connection. Pure; the PSK is compared in constant time.
pub fn diff(old: &ConnPlan, new: &ConnPlan) -> PlanDiff {
    let (a, b) = (&old.peer, &new.peer);
    let psk_differs = !bool::from(a.psk.as_bytes().ct_eq(b.psk.as_bytes()));
    let checks: [(&'static str, bool, Effect); 24] = [
        ("left", old.local != new.local, Effect::Restart),
        ("right", old.remote != new.remote, Effect::Restart),
        ("leftid", a.local_id != b.local_id, Effect::Restart),
        ("rightid", a.remote_id != b.remote_id, Effect::Restart),
        ("psk", psk_differs, Effect::Restart),
        ("leftsubnet", a.local_ts != b.local_ts, Effect::Restart),
        ("rightsubnet", a.remote_ts != b.remote_ts, Effect::Restart),
        (
            "encapsulation",
            a.force_encap != b.force_encap,
            Effect::Restart,
        ),
        ("interface", old.ifname != new.ifname, Effect::Reopen),
        ("ike", a.ike_proposals != b.ike_proposals, Effect::IkeRekey),
        (
            "ikelifetime",
            a.ike_lifetime != b.ike_lifetime,
            Effect::IkeRekey,
        ),
        (
            "esp",
            a.esp_proposals != b.esp_proposals,
            Effect::ChildRekey,
        ),
        (
            "lifetime",
            a.child_lifetime != b.child_lifetime,
            Effect::ChildRekey,
        ),
        (
            "replay_window",
            a.replay_window != b.replay_window,
            Effect::ChildRekey,
        ),
        (
            "rekeymargin",
            a.rekey_margin != b.rekey_margin,
            Effect::InPlace,
        ),
        ("rekeyfuzz", a.rekey_fuzz != b.rekey_fuzz, Effect::InPlace),
        ("dpddelay", a.dpd_delay != b.dpd_delay, Effect::InPlace),
        (
            "dpdtimeout",
            a.dpd_timeout != b.dpd_timeout,
            Effect::InPlace,
        ),
        ("retransmit", a.retransmit != b.retransmit, Effect::InPlace),
        ("auto", old.start != new.start, Effect::InPlace),
        (
            "dpdaction",
            old.dpd_action != new.dpd_action,
            Effect::InPlace,
        ),
        (
            "keyingtries",
            old.keying_tries != new.keying_tries,
            Effect::InPlace,
        ),
        ("routes", old.routes != new.routes, Effect::InPlace),
        (
            "mtu/inside address",
            old.mtu != new.mtu
                || old.inside != new.inside
                || old.remote_inside != new.remote_inside,
            Effect::Interface,
        ),
    ];
    let mut d = PlanDiff::default();
    for (name, differs, effect) in checks {
        if !differs {
            continue;
        }
        d.settings.push(name);
        match effect {
            Effect::InPlace => {}
            Effect::Interface => d.interface = true,
            Effect::ChildRekey => d.child_rekey = true,
            Effect::IkeRekey => d.ike_rekey = true,
            Effect::Restart => d.restart = true,
            Effect::Reopen => {
                d.restart = true;
                d.reopen = true;
            }
        }
    }
    d
}

impl Engine {
    /// Applies a reloaded configuration: `plans` in configuration order,
    /// failover `groups` as indices into `plans` (as for
    /// [`Engine::new`]). Checks every plan first: on an error nothing
    /// changes. Tunnels keep their [`TunnelId`]; added ones get new ids.
    pub fn reload(
        &mut self,
        now: Instant,
        plans: Vec<ConnPlan>,
        groups: Vec<Vec<usize>>,
    ) -> Result<Reloaded, String> {
        if self.shutdown_at.is_some() {
            return Err("shutting down".into());
        }
        let mut policies = Vec::with_capacity(plans.len());
        for p in &plans {
            policies
                .push(lifecycle::policy_selectors(p).map_err(|e| format!("conn {}: {e}", p.name))?);
        }
        if groups.iter().flatten().any(|&m| m >= plans.len()) {
            return Err("a failover group names no connection".into());
        }
        let added = plans
            .iter()
            .filter(|p| self.live(&p.name).is_none())
            .count();
        u32::try_from(self.tunnels.len() + added).map_err(|_| "too many tunnels")?;

        let announced_before = self.announced();
        let old_actives: HashSet<usize> = self.groups.iter().map(Group::active_conn).collect();
        let mut report = ReloadReport::default();
        let mut interfaces = Vec::new();
        let mut index_of_plan = Vec::with_capacity(plans.len());
        let mut matched = vec![false; self.tunnels.len()];
        let mut to_start = Vec::new();
        // Tunnels whose interface is replaced: their routes must follow.
        let mut reopened = HashSet::new();
        for (plan, policy) in plans.into_iter().zip(policies) {
            // A new IKE version is a new connection: the old one is
            // deleted (removed) and the new one added.
            let same = self
                .live(&plan.name)
                .filter(|&i| self.tunnels[i].plan.ike_version == plan.ike_version);
            if let Some(i) = same {
                matched[i] = true;
                index_of_plan.push(i);
                let mut d = diff(&self.tunnels[i].plan, &plan);
                if d.ike_rekey && !d.restart && !self.rekey_keeps_group(i, &plan) {
                    // ike-lite rekeys with the current group's KE: a new
                    // group needs a new IKE SA.
                    d.restart = true;
                }
                if d.is_empty() {
                    report.kept.push(plan.name);
                    continue;
                }
                let id = self.tunnels[i].id;
                if d.reopen {
                    reopened.insert(id);
                    interfaces.push((id, InterfaceChange::Reopen));
                } else if d.interface {
                    interfaces.push((id, InterfaceChange::Reconfigure));
                }
                tunnel_event!(
                    info, &self.tunnels[i], reason = %snake(&d.how()), settings = ?d.settings,
                    "reload: changed ({})", d.how()
                );
                report.changed.push(ChangedConn {
                    name: plan.name.clone(),
                    how: d.how(),
                    settings: d.settings.iter().map(|s| s.to_string()).collect(),
                });
                self.change(now, i, plan, policy, &d);
            } else {
                let i = self.tunnels.len();
                let id = TunnelId(i as u32);
                self.actions.push_back(Action::Sa(SaAction::AddTunnel {
                    tunnel: id,
                    policies: policy,
                }));
                let conn = self.ike.add_peer(plan.peer.clone(), plan.ike_version);
                self.by_conn.insert(conn, id);
                report.added.push(plan.name.clone());
                if plan.start == StartMode::Initiate {
                    to_start.push(i);
                }
                self.tunnels.push(Tunnel::new(id, plan, conn));
                tunnel_event!(info, &self.tunnels[i], reason = "added", "reload: added");
                index_of_plan.push(i);
                interfaces.push((id, InterfaceChange::Open));
            }
        }
        for (i, seen) in matched.into_iter().enumerate() {
            if !seen && !self.tunnels[i].removed {
                report.removed.push(self.tunnels[i].plan.name.clone());
                interfaces.push((self.tunnels[i].id, InterfaceChange::Close));
                self.remove(now, i);
            }
        }

        // Failover groups of the new configuration; a group keeps the
        // member its routes point at while that member is usable.
        self.groups = groups
            .into_iter()
            .map(|g| Group::new(g.into_iter().map(|m| index_of_plan[m]).collect()))
            .collect();
        for g in &mut self.groups {
            if let Some(k) = g.members.iter().position(|m| old_actives.contains(m)) {
                g.active = k;
            }
            if g.members.len() > 1 {
                let tunnels = &self.tunnels;
                g.active = g.choose(|m| tunnels[m].usable(), self.failback);
            }
        }
        let announced_after = self.announced();
        let still: HashSet<IpNet> = announced_after
            .iter()
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        let gone: Vec<IpNet> = announced_before
            .iter()
            .flat_map(|(_, r)| r.iter().copied())
            .filter(|n| !still.contains(n))
            .collect();
        if !gone.is_empty() {
            self.actions.push_back(Action::Unroute { routes: gone });
        }
        for (tunnel, routes) in announced_after {
            if reopened.contains(&tunnel) || !announced_before.contains(&(tunnel, routes.clone())) {
                self.actions.push_back(Action::Routes { tunnel, routes });
            }
        }
        for i in to_start {
            self.initiate(now, i);
        }
        self.process(now);
        Ok(Reloaded { report, interfaces })
    }

    /// Whether an IKE rekey of tunnel `i` can offer `plan`'s proposals:
    /// one of them has the Diffie-Hellman group of the established IKE SA
    /// (or none is established).
    fn rekey_keeps_group(&self, i: usize, plan: &ConnPlan) -> bool {
        match self.ike.ike_algorithms(self.tunnels[i].conn) {
            Some(c) => plan.peer.ike_proposals.iter().any(|p| p.dh.contains(&c.dh)),
            None => true,
        }
    }

    /// The configured (not removed) tunnel called `name`.
    fn live(&self, name: &str) -> Option<usize> {
        self.tunnels
            .iter()
            .position(|t| !t.removed && t.plan.name == name)
    }

    /// The routes each failover group points at its active member.
    fn announced(&self) -> Vec<(TunnelId, Vec<IpNet>)> {
        self.groups
            .iter()
            .map(|g| {
                let t = &self.tunnels[g.active_conn()];
                (t.id, t.plan.routes.clone())
            })
            .collect()
    }

    /// Brings tunnel `i` to `plan` (see the module documentation).
    fn change(
        &mut self,
        now: Instant,
        i: usize,
        plan: ConnPlan,
        policies: Vec<(
            ipsec_core::selector::TrafficSelector,
            ipsec_core::selector::TrafficSelector,
        )>,
        d: &PlanDiff,
    ) {
        let conn = self.tunnels[i].conn;
        if let Err(e) = self.ike.replace_peer(conn, plan.peer.clone()) {
            tunnel_event!(warn, &self.tunnels[i], reason = %e, "reload: new settings refused by IKE: {e}");
        }
        let t = &mut self.tunnels[i];
        t.plan = plan;
        if t.parked == Some(super::Parked::GaveUp) {
            t.parked = None;
        }
        t.attempts = 0;
        if d.restart {
            self.remove_children(i);
            let t = &mut self.tunnels[i];
            self.actions
                .push_back(Action::Sa(SaAction::ReplacePolicies {
                    tunnel: t.id,
                    policies,
                }));
            if t.ike_up {
                t.restart_on_down = true;
                if let Err(e) = self.ike.delete(now, conn) {
                    tunnel_event!(warn, t, reason = %e, "reload: delete: {e}");
                }
                return;
            }
        } else {
            let t = &self.tunnels[i];
            if d.ike_rekey && t.ike_up {
                if let Err(e) = self.ike.rekey_ike(now, conn) {
                    tunnel_event!(warn, t, reason = %e, "reload: IKE rekey: {e}");
                }
            }
            if d.child_rekey {
                if let Some(c) = t.current {
                    if let Err(e) = self.ike.rekey_child(now, conn, c.spi_in) {
                        tunnel_event!(warn, t, reason = %e, "reload: child rekey: {e}");
                    }
                }
            }
        }
        let t = &self.tunnels[i];
        if !t.ike_up && !t.connecting && t.plan.start == StartMode::Initiate {
            self.initiate(now, i);
        }
    }

    /// Deletes tunnel `i` for good: DELETE to the peer, its SAs and SPD
    /// entries out of the data path, its connection retired in ike-lite.
    fn remove(&mut self, now: Instant, i: usize) {
        let conn = self.tunnels[i].conn;
        let was_up = self.tunnels[i].ike_up;
        if was_up {
            if let Err(e) = self.ike.delete(now, conn) {
                tunnel_event!(warn, &self.tunnels[i], reason = %e, "reload: delete: {e}");
            }
        }
        let _ = self.ike.retire_peer(conn);
        self.remove_children(i);
        let t = &mut self.tunnels[i];
        t.removed = true;
        t.ike_up = false;
        t.connecting = false;
        t.retry_at = None;
        t.parked = Some(super::Parked::AdminDown);
        // Its later IKE events are not logged: this line stands for them.
        if was_up {
            tunnel_event!(info, t, reason = "removed", "reload: removed (DELETE sent)");
        } else {
            tunnel_event!(info, t, reason = "removed", "reload: removed");
        }
        t.ike_spis = None;
        self.actions
            .push_back(Action::Sa(SaAction::RemoveTunnel { tunnel: t.id }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use std::path::Path;

    fn plan(extra: &str, psk: &str) -> ConnPlan {
        let rsub = if extra.contains("rightsubnet=") {
            ""
        } else {
            "  rightsubnet=10.2.0.0/16\n"
        };
        let conf = format!(
            "conn t\n  authby=secret\n  auto=start\n  left=192.0.2.1\n  right=192.0.2.2\n  leftsubnet=10.1.0.0/16\n{rsub}{extra}"
        );
        let sec = format!("192.0.2.1 192.0.2.2 : PSK \"{psk}\"\n");
        let cfg = parse_str(&conf, Path::new("c"), &sec, Path::new("s"))
            .unwrap()
            .config;
        let (c, m) = crate::runtime::plan::select_conns(&cfg, &[]).unwrap()[0];
        crate::runtime::plan::plan_conn(
            c,
            m,
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            &cfg.secrets,
            true,
        )
        .unwrap()
    }

    #[test]
    fn diff_classifies_each_change() {
        let base = plan("", "k");
        assert!(diff(&base, &plan("", "k")).is_empty());
        let d = diff(&base, &plan("  dpddelay=10\n  dpdaction=clear\n", "k"));
        assert_eq!(d.settings, ["dpddelay", "dpdtimeout", "dpdaction"]);
        assert_eq!(d.how(), "in place");
        let d = diff(&base, &plan("  esp=aes256gcm16\n", "k"));
        assert_eq!((d.how().as_str(), d.child_rekey), ("child rekey", true));
        let d = diff(
            &base,
            &plan("  ike=aes256-sha256-modp2048\n  esp=aes256gcm16\n", "k"),
        );
        assert_eq!(d.how(), "ike rekey + child rekey");
        let d = diff(&base, &plan("", "other"));
        assert_eq!((d.settings.as_slice(), d.restart), (&["psk"][..], true));
        let d = diff(&base, &plan("  rightsubnet=10.3.0.0/16\n", "k"));
        assert!(d.restart && d.settings.contains(&"rightsubnet"));
        let d = diff(&base, &plan("  mtu=1300\n", "k"));
        assert!(d.interface && !d.restart, "{d:?}");
        let d = diff(&base, &plan("  vti-interface=tb-other\n", "k"));
        assert!(d.reopen && d.restart, "{d:?}");
    }
}
