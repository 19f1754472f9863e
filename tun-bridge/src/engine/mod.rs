//! The tunnel engine: every decision of `tun-bridge up`, with no IO, no
//! clock and no randomness of its own (quinn-proto's `Connection` to the
//! IO shell's quinn; boringtun's `noise` to its `device`).
//!
//! It owns the connections of a configuration: per tunnel the IKE SAs
//! through one ike-lite [`Endpoint`], the Child SA lifecycle (install,
//! make-before-break switch-over, retire), the lifetime policy, attempts
//! and backoff, the DPD verdict and `dpdaction`, failover between tunnels
//! that carry the same subnets, and the status. Input comes through
//! `handle_*(now, ..)`; output through [`Engine::poll_action`] (IKE
//! datagrams, SA and route changes for the shell to carry out) and
//! [`Engine::poll_timeout`]. It never touches a packet of the data path.
//!
//! * [`lifecycle`]: lifetimes, SPD entries, restart and backoff rules.
//! * [`failover`]: which member of a tunnel pair carries the routes.
//! * [`status`]: the status report.
//! * [`counters`]: process-wide IKE message counters (for metrics).
//! * [`reload`]: what a new configuration means for the running tunnels.
//! * `log`: the log line of each tunnel event, with the same field names.

pub mod counters;
pub mod failover;
pub mod lifecycle;
mod log;
pub mod reload;
pub mod status;
mod tunnel;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ike_lite::{
    ChildSa, ConnId, DatagramError, DownReason, DualEndpoint, Event as IkeEvent, IkeSaSecrets,
    Transmit,
};
use ipsec_core::datapath::Direction;
use ipsec_core::sa::{Expiry, SaParams};
use ipsec_core::selector::TrafficSelector;
use log::{tunnel_event, EspSpi, IkeSpi};
use rand_core::{CryptoRngCore, RngCore};
use tracing::{debug, info, warn};

use crate::config::values::IpNet;
use crate::runtime::plan::{ConnPlan, StartMode};
use failover::{Failback, Group};
use lifecycle::Restart;
use tunnel::Tunnel;
pub use tunnel::{ChildRef, Parked};

/// How long shutdown waits for the answers to its DELETEs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A tunnel: one configured connection, numbered in configuration order
/// (`TunnelId(k)` is the k-th plan). The data path's own type: policies and
/// SAs carry it.
pub use ipsec_core::datapath::TunnelId;

fn index(t: TunnelId) -> usize {
    t.0 as usize
}

/// Something the shell must carry out, in order.
#[derive(Debug)]
pub enum Action {
    /// Send an IKE datagram.
    Transmit(Transmit),
    /// Change the data path's SPD or SAD.
    Sa(SaAction),
    /// Point these prefixes at this tunnel's interface (replacing any
    /// route to them).
    Routes {
        /// The tunnel.
        tunnel: TunnelId,
        /// Prefixes.
        routes: Vec<IpNet>,
    },
    /// Withdraw the routes to these prefixes (a reload removed them).
    Unroute {
        /// Prefixes.
        routes: Vec<IpNet>,
    },
    /// IKE keys for `--log-keys`.
    IkeSecrets(Box<IkeSaSecrets>),
    /// The operational state of a route-based tunnel's interface: up while
    /// it has a Child SA and a live peer, down otherwise (the shell turns
    /// the carrier on or off; the address stays). Rekeys do not toggle it.
    Link {
        /// The tunnel.
        tunnel: TunnelId,
        /// Carrier on.
        up: bool,
    },
    /// IKEv1 ISAKMP keys for `--log-keys`.
    IsakmpSecrets(Box<ike_lite::v1::IsakmpSaSecrets>),
}

/// A change to the data path (carried out by [`crate::dataplane`]).
#[derive(Debug)]
pub enum SaAction {
    /// The tunnel's SPD entries (local, remote selector pairs).
    AddTunnel {
        /// The tunnel.
        tunnel: TunnelId,
        /// Its policies.
        policies: Vec<(TrafficSelector, TrafficSelector)>,
    },
    /// Replace the tunnel's SPD entries (its selectors changed on reload;
    /// its Child SAs were removed first).
    ReplacePolicies {
        /// The tunnel.
        tunnel: TunnelId,
        /// Its new policies.
        policies: Vec<(TrafficSelector, TrafficSelector)>,
    },
    /// Remove the tunnel: its SPD entries and any SA left (a reload
    /// removed the connection).
    RemoveTunnel {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// Install a Child SA: inbound usable at once, outbound kept until
    /// [`SaAction::SelectOutbound`] names it.
    Install {
        /// The tunnel.
        tunnel: TunnelId,
        /// Inbound half.
        inbound: Box<SaParams>,
        /// Outbound half.
        outbound: Box<SaParams>,
    },
    /// Encrypt the tunnel's traffic with this outbound SA from now on
    /// (the make-before-break commit point); `None` stops sending.
    SelectOutbound {
        /// The tunnel.
        tunnel: TunnelId,
        /// Outbound SPI of an installed SA.
        spi_out: Option<u32>,
    },
    /// Remove one or both halves of a Child SA.
    Remove {
        /// The tunnel.
        tunnel: TunnelId,
        /// Inbound SPI.
        spi_in: Option<u32>,
        /// Outbound SPI.
        spi_out: Option<u32>,
    },
}

/// What the data path reports (the shell translates ipsec-core's events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPathEvent {
    /// An SA reached its soft (rekey) or hard (delete) lifetime.
    Expired {
        /// The tunnel.
        tunnel: TunnelId,
        /// SPI of the SA.
        spi: u32,
        /// Its direction.
        direction: Direction,
        /// Soft or hard.
        kind: Expiry,
    },
    /// Traffic for a tunnel without a Child SA.
    Acquire {
        /// The tunnel.
        tunnel: TunnelId,
    },
}

/// An operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bring a tunnel up now (resets its attempts).
    Up(TunnelId),
    /// Delete a tunnel's IKE SA and keep it down.
    Down(TunnelId),
    /// Delete every IKE SA and stop.
    Shutdown,
}

/// Settings of an [`Engine`].
pub struct EngineOptions {
    /// Failback policy of failover groups.
    pub failback: Failback,
    /// Endpoint-wide IKE settings.
    pub ike: ike_lite::Config,
    /// Randomness of the IKE endpoint (SPIs, nonces, key exchange).
    pub ike_rng: Box<dyn CryptoRngCore + Send>,
    /// Randomness for the engine's own choices (restart jitter).
    pub rng: Box<dyn RngCore + Send>,
}

/// The tunnel engine (see the module documentation).
pub struct Engine {
    /// IKEv2 and IKEv1 connections (each plan says which).
    ike: DualEndpoint,
    tunnels: Vec<Tunnel>,
    by_conn: HashMap<ConnId, TunnelId>,
    groups: Vec<Group>,
    failback: Failback,
    rng: Box<dyn RngCore + Send>,
    actions: VecDeque<Action>,
    started: Instant,
    shutdown_at: Option<Instant>,
    ike_counters: counters::IkeCounters,
    natt_port: u16,
}

impl Engine {
    /// An engine for `plans` (in configuration order) with failover
    /// `groups` (indices into `plans`; the first member is the primary).
    /// Queues each tunnel's SPD entries and its group's routes, and starts
    /// the `auto=start` connections.
    pub fn new(
        plans: Vec<ConnPlan>,
        groups: Vec<Vec<usize>>,
        opts: EngineOptions,
        now: Instant,
    ) -> Result<Engine, String> {
        let natt_port = opts.ike.natt_port;
        let mut ike = DualEndpoint::with_rng(opts.ike, opts.ike_rng);
        let mut tunnels = Vec::with_capacity(plans.len());
        let mut by_conn = HashMap::new();
        let mut actions = VecDeque::new();
        for (i, plan) in plans.into_iter().enumerate() {
            let id = TunnelId(u32::try_from(i).map_err(|_| "too many tunnels")?);
            let policies = lifecycle::policy_selectors(&plan)
                .map_err(|e| format!("conn {}: {e}", plan.name))?;
            actions.push_back(Action::Sa(SaAction::AddTunnel {
                tunnel: id,
                policies,
            }));
            if plan.route_based {
                // No carrier until the first Child SA.
                actions.push_back(Action::Link {
                    tunnel: id,
                    up: false,
                });
            }
            let conn = ike.add_peer(plan.peer.clone(), plan.ike_version);
            by_conn.insert(conn, id);
            tunnels.push(Tunnel::new(id, plan, conn));
        }
        let groups: Vec<Group> = groups.into_iter().map(Group::new).collect();
        for g in &groups {
            let t = &tunnels[g.active_conn()];
            actions.push_back(Action::Routes {
                tunnel: t.id,
                routes: t.plan.routes.clone(),
            });
            if g.members.len() > 1 {
                let names: Vec<&str> = g
                    .members
                    .iter()
                    .map(|&m| tunnels[m].plan.name.as_str())
                    .collect();
                info!(group = ?names, failback = %opts.failback, "failover group (first is primary)");
            }
        }
        let mut e = Engine {
            ike,
            tunnels,
            by_conn,
            groups,
            failback: opts.failback,
            rng: opts.rng,
            actions,
            started: now,
            shutdown_at: None,
            ike_counters: counters::IkeCounters::default(),
            natt_port,
        };
        for i in 0..e.tunnels.len() {
            if e.tunnels[i].plan.start == StartMode::Initiate {
                e.initiate(now, i);
            }
        }
        e.process(now);
        Ok(e)
    }

    /// Feeds an IKE datagram received on `local` from `remote`.
    pub fn handle_ike(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), DatagramError> {
        let r = self.ike.handle_datagram(now, local, remote, datagram);
        self.ike_counters
            .received(local, self.natt_port, datagram, &r);
        self.process(now);
        r
    }

    /// Feeds an event of the data path.
    pub fn handle_datapath(&mut self, now: Instant, ev: DataPathEvent) {
        match ev {
            DataPathEvent::Acquire { tunnel } => {
                let Some(t) = self.tunnels.get_mut(index(tunnel)) else {
                    return;
                };
                tunnel_event!(debug, t, "acquire: traffic without SA");
                if t.parked == Some(Parked::OnTraffic) {
                    t.parked = None;
                }
                self.initiate(now, index(tunnel));
            }
            DataPathEvent::Expired {
                tunnel,
                spi,
                direction,
                kind,
            } => {
                let Some(t) = self.tunnels.get(index(tunnel)) else {
                    return;
                };
                let spi_in = match direction {
                    Direction::Inbound => Some(spi),
                    Direction::Outbound => t.child_by_out(spi).map(|c| c.spi_in),
                };
                let (what, reason) = match kind {
                    Expiry::Soft => ("Child SA lifetime reached: rekeying", "soft_lifetime"),
                    Expiry::Hard => ("Child SA lifetime reached: deleting", "hard_lifetime"),
                };
                match (direction, spi_in) {
                    (Direction::Inbound, _) => {
                        tunnel_event!(info, t, spi_in = %EspSpi(spi), reason, "{what}")
                    }
                    (Direction::Outbound, Some(spi_in)) => tunnel_event!(
                        info, t, spi_in = %EspSpi(spi_in), spi_out = %EspSpi(spi), reason, "{what}"
                    ),
                    (Direction::Outbound, None) => {
                        tunnel_event!(info, t, spi_out = %EspSpi(spi), reason, "{what}")
                    }
                }
                if let Some(spi_in) = spi_in {
                    let conn = t.conn;
                    let r = match kind {
                        Expiry::Soft => self.ike.rekey_child(now, conn, spi_in),
                        Expiry::Hard => self.ike.delete_child(now, conn, spi_in),
                    };
                    if let Err(e) = r {
                        tunnel_event!(debug, t, spi_in = %EspSpi(spi_in), reason = %e, "lifetime action not carried out");
                    }
                }
            }
        }
        self.process(now);
    }

    /// Carries out an operator's command.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Up(id) => {
                if let Some(t) = self.tunnels.get_mut(index(id)).filter(|t| !t.removed) {
                    t.attempts = 0;
                    t.parked = None;
                    self.initiate(now, index(id));
                }
            }
            Command::Down(id) => {
                if let Some(t) = self.tunnels.get_mut(index(id)).filter(|t| !t.removed) {
                    t.parked = Some(Parked::AdminDown);
                    t.retry_at = None;
                    if let Err(e) = self.ike.delete(now, t.conn) {
                        debug!(conn = %t.plan.name, "delete: {e}");
                    }
                }
            }
            Command::Shutdown => {
                if self.shutdown_at.is_none() {
                    self.shutdown_at = Some(now + SHUTDOWN_GRACE);
                    for t in &mut self.tunnels {
                        t.retry_at = None;
                        if t.ike_up || t.connecting {
                            if let Err(e) = self.ike.delete(now, t.conn) {
                                debug!(conn = %t.plan.name, "delete: {e}");
                            }
                        }
                    }
                }
            }
        }
        self.process(now);
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ike.poll_timeout().is_some_and(|t| t <= now) {
            self.ike.handle_timeout(now);
        }
        for t in &mut self.tunnels {
            let id = t.id;
            let actions = &mut self.actions;
            t.retiring.retain(|&(spi_in, at)| {
                if at > now {
                    return true;
                }
                actions.push_back(Action::Sa(SaAction::Remove {
                    tunnel: id,
                    spi_in: Some(spi_in),
                    spi_out: None,
                }));
                false
            });
        }
        for i in 0..self.tunnels.len() {
            if self.tunnels[i].retry_at.is_some_and(|r| r <= now) {
                self.tunnels[i].retry_at = None;
                self.initiate(now, i);
            }
        }
        self.process(now);
    }

    /// The IKE endpoint's process-wide counters (half-open SAs, cookies,
    /// flood-limit drops, messages received).
    pub fn ike_stats(&self) -> ike_lite::EndpointStats {
        self.ike.endpoint_stats()
    }

    /// When [`Engine::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tunnels
            .iter()
            .flat_map(|t| t.retry_at.into_iter().chain(t.retiring.iter().map(|r| r.1)))
            .chain(self.ike.poll_timeout())
            .chain(self.shutdown_at)
            .min()
    }

    /// The tunnel configured as `name`.
    pub fn tunnel_id(&self, name: &str) -> Option<TunnelId> {
        self.live_tunnels()
            .find(|t| t.plan.name == name)
            .map(|t| t.id)
    }

    /// The names of the configured tunnels, in configuration order.
    pub fn tunnel_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.live_tunnels().map(|t| t.plan.name.as_str())
    }

    /// The plan of a configured (not removed) tunnel.
    pub fn plan(&self, id: TunnelId) -> Option<&ConnPlan> {
        self.tunnels
            .get(index(id))
            .filter(|t| !t.removed)
            .map(|t| &t.plan)
    }

    fn live_tunnels(&self) -> impl Iterator<Item = &Tunnel> + '_ {
        self.tunnels.iter().filter(|t| !t.removed)
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// After [`Command::Shutdown`]: true once every IKE SA is gone or the
    /// grace period ran out.
    pub fn is_shut_down(&self, now: Instant) -> bool {
        let Some(at) = self.shutdown_at else {
            return false;
        };
        let all_down = self.ike.ike_sa_count() == 0 || self.tunnels.iter().all(|t| !t.ike_up);
        if !all_down && now >= at {
            warn!("shutdown: no DELETE answer within {SHUTDOWN_GRACE:?}");
        }
        all_down || now >= at
    }

    fn initiate(&mut self, now: Instant, i: usize) {
        let t = &mut self.tunnels[i];
        if t.ike_up
            || t.connecting
            || t.removed
            || self.shutdown_at.is_some()
            || t.plan.remote.is_unspecified()
            || matches!(t.parked, Some(Parked::AdminDown | Parked::GaveUp))
        {
            return;
        }
        t.retry_at = None;
        t.parked = None;
        match self.ike.initiate(now, t.conn) {
            Ok(()) => {
                t.connecting = true;
                t.attempts += 1;
                tunnel_event!(info, t, attempt = t.attempts, "initiating IKE SA");
            }
            Err(e) => tunnel_event!(warn, t, reason = %e, "initiate failed: {e}"),
        }
    }

    /// Drains ike-lite's events and datagrams into actions and re-evaluates
    /// the failover groups.
    fn process(&mut self, now: Instant) {
        let mut any = false;
        while let Some(ev) = self.ike.poll_event() {
            any = true;
            self.on_ike_event(now, ev);
        }
        while let Some(t) = self.ike.poll_transmit() {
            self.ike_counters.sent(&t.payload, t.non_esp_marker);
            self.actions.push_back(Action::Transmit(t));
        }
        if any {
            self.update_groups();
            self.update_links();
        }
    }

    /// Queues a [`Action::Link`] for every route-based tunnel whose
    /// usability changed (a Child SA came or went, DPD declared the peer
    /// dead or it answered again).
    fn update_links(&mut self) {
        for t in self.tunnels.iter_mut().filter(|t| t.plan.route_based) {
            let up = t.usable();
            if up != t.link_up {
                t.link_up = up;
                info!(conn = %t.plan.name, dev = %t.plan.ifname, up, "tunnel interface carrier");
                self.actions.push_back(Action::Link { tunnel: t.id, up });
            }
        }
    }

    fn tunnel_of(&self, conn: ConnId) -> Option<usize> {
        self.by_conn.get(&conn).map(|&t| index(t))
    }

    fn on_ike_event(&mut self, now: Instant, ev: IkeEvent) {
        let conn = match &ev {
            IkeEvent::IkeSaUp { conn, .. }
            | IkeEvent::IkeSaRekeyed { conn, .. }
            | IkeEvent::IkeSaDown { conn, .. }
            | IkeEvent::ChildSaOutboundSwitched { conn, .. }
            | IkeEvent::ChildSaDeleted { conn, .. }
            | IkeEvent::ChildSaFailed { conn, .. }
            | IkeEvent::AuthenticationFailed { conn, .. }
            | IkeEvent::PeerDead { conn }
            | IkeEvent::NatDetected { conn, .. } => *conn,
            IkeEvent::ChildSaEstablished(c) => c.conn,
            IkeEvent::IkeSaSecrets(_) => {
                if let IkeEvent::IkeSaSecrets(s) = ev {
                    self.actions.push_back(Action::IkeSecrets(s));
                }
                return;
            }
            IkeEvent::IsakmpSaSecrets(_) => {
                if let IkeEvent::IsakmpSaSecrets(s) = ev {
                    self.actions.push_back(Action::IsakmpSecrets(s));
                }
                return;
            }
            other => {
                debug!(event = ?other, "unhandled IKE event");
                return;
            }
        };
        let Some(i) = self.tunnel_of(conn) else {
            debug!(?conn, "IKE event for an unknown connection");
            return;
        };
        if self.tunnels[i].removed {
            // Removed by a reload: its SAs are gone from the data path; an
            // attempt that completes anyway is deleted at once.
            if let IkeEvent::IkeSaUp { .. } = ev {
                let _ = self.ike.delete(now, conn);
            }
            return;
        }
        match ev {
            IkeEvent::IkeSaUp {
                spi_i,
                spi_r,
                initiator,
                udp_encap,
                algorithms,
                ..
            } => {
                let t = &mut self.tunnels[i];
                t.ike_up = true;
                t.ike_spis = Some((spi_i, spi_r));
                t.established_at.get_or_insert(now);
                t.connecting = false;
                t.peer_dead = false;
                t.attempts = 0;
                t.retry_at = None;
                t.last_error = None;
                t.repeated_errors = 0;
                tunnel_event!(
                    info, t, initiator, natt = udp_encap, ike = %algorithms.name(),
                    "IKE SA established"
                );
            }
            IkeEvent::IkeSaRekeyed { old, new, .. } => {
                let t = &mut self.tunnels[i];
                t.ike_rekeys += 1;
                t.ike_spis = Some(new);
                tunnel_event!(
                    info, t, old_ike_spi_i = %IkeSpi(old.0), old_ike_spi_r = %IkeSpi(old.1),
                    "IKE SA rekeyed"
                );
            }
            IkeEvent::ChildSaEstablished(c) => self.install_child(i, &c),
            IkeEvent::ChildSaOutboundSwitched {
                old_spi_out,
                new_spi_out,
                ..
            } => self.switch_outbound(now, i, old_spi_out, new_spi_out),
            IkeEvent::ChildSaDeleted {
                spi_in,
                spi_out,
                reason,
                ..
            } => {
                let t = &mut self.tunnels[i];
                t.pending.retain(|c| c.spi_out != spi_out);
                t.installed.retain(|c| c.spi_out != spi_out);
                // A replaced SA keeps receiving for a while: the peer may
                // have sent on it until it switched.
                let retire = reason == ike_lite::ChildDeleteReason::Rekeyed;
                if retire {
                    t.retiring.push((spi_in, now + lifecycle::RETIRE_DELAY));
                }
                self.actions.push_back(Action::Sa(SaAction::Remove {
                    tunnel: t.id,
                    spi_in: (!retire).then_some(spi_in),
                    spi_out: Some(spi_out),
                }));
                if t.current.is_some_and(|c| c.spi_out == spi_out) {
                    // Fall back to another live Child SA (e.g. of a
                    // duplicate IKE SA), else stop sending.
                    t.current = t.installed.last().copied();
                    self.actions.push_back(Action::Sa(SaAction::SelectOutbound {
                        tunnel: t.id,
                        spi_out: t.current.map(|c| c.spi_out),
                    }));
                }
                tunnel_event!(
                    info, t, spi_in = %EspSpi(spi_in), spi_out = %EspSpi(spi_out),
                    reason = %log::child_delete_reason(reason), "Child SA deleted"
                );
            }
            IkeEvent::ChildSaFailed { notify, .. } => {
                let t = &mut self.tunnels[i];
                let reason = format!("refused_{}", log::snake(&format!("{notify:?}")));
                if t.fail(format!("child SA refused: {notify:?}")) {
                    tunnel_event!(warn, t, reason, "Child SA negotiation failed: {notify:?}");
                } else {
                    tunnel_event!(
                        debug,
                        t,
                        reason,
                        repeats = t.repeated_errors,
                        "Child SA negotiation failed again"
                    );
                }
            }
            IkeEvent::AuthenticationFailed { reason, .. } => {
                let t = &mut self.tunnels[i];
                let what = match reason {
                    ike_lite::AuthFailure::BadAuth => {
                        "the peer's AUTH does not verify with our PSK (PSKs differ?)"
                    }
                    ike_lite::AuthFailure::RejectedByPeer => {
                        "the peer rejected our AUTH (AUTHENTICATION_FAILED: PSKs or IDs differ?)"
                    }
                    ike_lite::AuthFailure::UnknownIdentity => "the peer's identity matches no conn",
                    ike_lite::AuthFailure::UnsupportedMethod => {
                        "the peer uses an authentication method other than PSK"
                    }
                    _ => "authentication failed",
                };
                let first = t.fail(format!("authentication failed: {what}"));
                let reason = log::auth_failure(reason);
                if first {
                    tunnel_event!(warn, t, reason, "authentication failed: {what}");
                } else {
                    tunnel_event!(
                        debug,
                        t,
                        reason,
                        repeats = t.repeated_errors,
                        "authentication failed again"
                    );
                }
            }
            IkeEvent::PeerDead { .. } => {
                let t = &mut self.tunnels[i];
                t.peer_dead = true;
                if t.ike_up {
                    t.dpd_failures += 1;
                    t.fail("peer dead (DPD: no answer)".into());
                    tunnel_event!(
                        warn, t, reason = "no_answer", action = %t.plan.dpd_action,
                        "DPD: peer dead (no answer to DPD or retransmissions)"
                    );
                }
            }
            IkeEvent::NatDetected {
                local_behind_nat,
                remote_behind_nat,
                ..
            } => {
                tunnel_event!(
                    info,
                    &self.tunnels[i],
                    local_behind_nat,
                    remote_behind_nat,
                    "NAT detected: using UDP encapsulation"
                );
            }
            IkeEvent::IkeSaDown { reason, .. } => self.ike_down(now, i, reason),
            _ => {}
        }
    }

    fn install_child(&mut self, i: usize, c: &ChildSa) {
        let t = &mut self.tunnels[i];
        let params = lifecycle::child_sa_params(c, Direction::Inbound, t.id)
            .and_then(|a| Ok((a, lifecycle::child_sa_params(c, Direction::Outbound, t.id)?)));
        let (inbound, outbound) = match params {
            Ok(p) => p,
            Err(e) => {
                t.fail(format!("cannot install child SA: {e}"));
                tunnel_event!(
                    warn, t, spi_in = %EspSpi(c.spi_in), spi_out = %EspSpi(c.spi_out),
                    reason = "unusable_parameters", "cannot install Child SA: {e}"
                );
                return;
            }
        };
        self.actions.push_back(Action::Sa(SaAction::Install {
            tunnel: t.id,
            inbound: Box::new(inbound),
            outbound: Box::new(outbound),
        }));
        let child = ChildRef {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            suite: c.suite,
        };
        if c.rekey_of.is_none() {
            t.current = Some(child);
            t.installed.push(child);
            self.actions.push_back(Action::Sa(SaAction::SelectOutbound {
                tunnel: t.id,
                spi_out: Some(c.spi_out),
            }));
        } else {
            t.pending.push(child);
        }
        t.remote_seen = Some(c.remote.ip());
        t.peer_dead = false;
        let (spi_in, spi_out) = (EspSpi(c.spi_in), EspSpi(c.spi_out));
        match c.rekey_of {
            None => tunnel_event!(
                info, t, spi_in = %spi_in, spi_out = %spi_out, esp = c.suite.name(),
                encap = c.udp_encap, "Child SA installed"
            ),
            Some(old) => tunnel_event!(
                info, t, spi_in = %spi_in, spi_out = %spi_out, esp = c.suite.name(),
                encap = c.udp_encap, rekey_of_spi_in = %EspSpi(old),
                "Child SA installed (rekey: inbound now, outbound at the switch)"
            ),
        }
    }

    fn switch_outbound(&mut self, now: Instant, i: usize, old_spi_out: u32, new_spi_out: u32) {
        let t = &mut self.tunnels[i];
        let Some(k) = t.pending.iter().position(|c| c.spi_out == new_spi_out) else {
            tunnel_event!(warn, t, spi_out = %EspSpi(new_spi_out), "outbound switch to an unknown Child SA");
            return;
        };
        let c = t.pending.remove(k);
        t.current = Some(c);
        t.installed.push(c);
        t.last_rekey = Some(now);
        t.child_rekeys += 1;
        self.actions.push_back(Action::Sa(SaAction::SelectOutbound {
            tunnel: t.id,
            spi_out: Some(new_spi_out),
        }));
        tunnel_event!(
            info, t, spi_in = %EspSpi(c.spi_in), spi_out = %EspSpi(c.spi_out),
            old_spi_out = %EspSpi(old_spi_out), "Child SA rekeyed: outbound switched to it"
        );
    }

    fn ike_down(&mut self, now: Instant, i: usize, reason: DownReason) {
        let t = &mut self.tunnels[i];
        let reason_field = log::down_reason(reason);
        if let Some(remaining) = self.ike.ike_spis(t.conn) {
            // A duplicate or replacement IKE SA of this connection is still
            // established: its Child SAs keep the tunnel up.
            t.ike_spis = Some(remaining);
            tunnel_event!(
                info, t, reason = %reason_field,
                "an IKE SA of the connection went down; the tunnel stays on this one"
            );
            return;
        }
        // Child SAs are reported deleted first; remove anything left.
        self.remove_children(i);
        let t = &mut self.tunnels[i];
        let was_up = t.ike_up;
        t.ike_up = false;
        t.established_at = None;
        t.connecting = false;
        if was_up {
            tunnel_event!(info, t, reason = %reason_field, "IKE SA down");
        }
        t.ike_spis = None;
        if !was_up {
            let msg = match reason {
                DownReason::Timeout => "no answer from the peer".to_string(),
                DownReason::Refused(n) => format!("the peer refused: {n:?}"),
                DownReason::Protocol => "the peer's answer was unusable".to_string(),
                _ => format!("IKE SA failed: {reason:?}"),
            };
            // An authentication failure was logged as such.
            if reason != DownReason::AuthFailed {
                if t.fail(msg.clone()) {
                    tunnel_event!(warn, t, reason = %reason_field, "connection attempt failed: {msg}");
                } else {
                    tunnel_event!(debug, t, reason = %reason_field, repeats = t.repeated_errors, "connection attempt failed again");
                }
            }
        }
        if std::mem::take(&mut t.restart_on_down) && self.shutdown_at.is_none() {
            // A reload changed settings that need a new IKE SA.
            tunnel_event!(info, t, mode = ?t.plan.start, reason = "reload", "restarting with the reloaded settings");
            if t.plan.start == StartMode::Initiate {
                self.initiate(now, i);
            }
            return;
        }
        if self.shutdown_at.is_some() || t.parked == Some(Parked::AdminDown) {
            return;
        }
        let restart = match lifecycle::restart_after_down(&t.plan, reason, was_up, t.attempts) {
            // No traffic reaches an interface without carrier: a
            // route-based tunnel restarts instead of waiting for it.
            Restart::OnTraffic if t.plan.route_based => Restart::After,
            r => r,
        };
        match restart {
            Restart::Never => {}
            Restart::OnTraffic => {
                t.parked = Some(Parked::OnTraffic);
                tunnel_event!(
                    info,
                    t,
                    "dpdaction=hold: waiting for traffic to re-initiate"
                );
            }
            Restart::GiveUp => {
                t.parked = Some(Parked::GaveUp);
                t.fail(format!(
                    "gave up after {} attempts (keyingtries)",
                    t.attempts
                ));
                tunnel_event!(
                    warn,
                    t,
                    attempts = t.attempts,
                    reason = "keyingtries",
                    "giving up (keyingtries reached)"
                );
            }
            Restart::After => {
                let initiator = t.plan.start == StartMode::Initiate;
                let random = (self.rng.next_u32() as f64) / (u32::MAX as f64 + 1.0);
                let delay = lifecycle::backoff(t.attempts, initiator, random);
                t.retry_at = Some(now + delay);
                tunnel_event!(
                    info,
                    t,
                    in_ms = delay.as_millis() as u64,
                    "will re-initiate"
                );
            }
        }
    }

    /// Removes every Child SA of tunnel `i` from the data path (installed,
    /// waiting for the switch, retiring) and stops its outbound traffic.
    fn remove_children(&mut self, i: usize) {
        let t = &mut self.tunnels[i];
        for c in t.installed.drain(..).chain(t.pending.drain(..)) {
            self.actions.push_back(Action::Sa(SaAction::Remove {
                tunnel: t.id,
                spi_in: Some(c.spi_in),
                spi_out: Some(c.spi_out),
            }));
        }
        for (spi_in, _) in t.retiring.drain(..) {
            self.actions.push_back(Action::Sa(SaAction::Remove {
                tunnel: t.id,
                spi_in: Some(spi_in),
                spi_out: None,
            }));
        }
        if t.current.take().is_some() {
            self.actions.push_back(Action::Sa(SaAction::SelectOutbound {
                tunnel: t.id,
                spi_out: None,
            }));
        }
    }

    /// Re-evaluates every failover group; queues route moves.
    fn update_groups(&mut self) {
        for g in &mut self.groups {
            if g.members.len() < 2 {
                continue;
            }
            let tunnels = &self.tunnels;
            let new = g.choose(|m| tunnels[m].usable(), self.failback);
            if new == g.active {
                continue;
            }
            let from = g.active_conn();
            g.active = new;
            let (tf, tt) = (&tunnels[from], &tunnels[g.active_conn()]);
            self.actions.push_back(Action::Routes {
                tunnel: tt.id,
                routes: tt.plan.routes.clone(),
            });
            warn!(
                from = %tf.plan.name, to = %tt.plan.name,
                from_state = %tf.state(), "failover: routes moved"
            );
        }
    }
}
