//! One tunnel's state as the engine sees it: its IKE progress, the Child
//! SAs installed in the data path (current, usable, waiting for the
//! outbound switch), attempts and backoff, and what the status reports.

use std::net::IpAddr;
use std::time::Instant;

use ike_lite::ConnId;
use ipsec_core::crypto::Suite;

use super::TunnelId;
use crate::control::TunnelState;
use crate::runtime::plan::ConnPlan;

/// A Child SA the data path holds, by its two SPIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildRef {
    /// Inbound SPI (chosen by us).
    pub spi_in: u32,
    /// Outbound SPI (chosen by the peer).
    pub spi_out: u32,
    /// ESP suite.
    pub suite: Suite,
}

/// Why a tunnel stays down without retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parked {
    /// `keyingtries` used up.
    GaveUp,
    /// Brought down by a command.
    AdminDown,
    /// `dpdaction=hold`: the next outbound packet restarts it.
    OnTraffic,
}

/// One configured connection.
pub(crate) struct Tunnel {
    pub id: TunnelId,
    pub plan: ConnPlan,
    pub conn: ConnId,
    /// The Child SA outbound traffic is encrypted with.
    pub current: Option<ChildRef>,
    /// Child SAs usable in both directions, oldest first.
    pub installed: Vec<ChildRef>,
    /// Rekeyed Child SAs: inbound works, outbound waits for the switch.
    pub pending: Vec<ChildRef>,
    /// Inbound SPIs of replaced Child SAs, removed at the given time.
    pub retiring: Vec<(u32, Instant)>,
    pub ike_up: bool,
    /// SPIs (initiator, responder) of the IKE SA the tunnel runs on, for
    /// the log lines (set when it comes up or is rekeyed).
    pub ike_spis: Option<(u64, u64)>,
    pub connecting: bool,
    pub peer_dead: bool,
    /// Attempts since the last established IKE SA.
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    pub parked: Option<Parked>,
    pub last_rekey: Option<Instant>,
    pub child_rekeys: u64,
    /// IKE SA rekeys completed.
    pub ike_rekeys: u64,
    /// Times DPD declared the peer of an established IKE SA dead.
    pub dpd_failures: u64,
    /// When the IKE SA (of the current run) came up.
    pub established_at: Option<Instant>,
    /// The peer's address as last seen (NAT).
    pub remote_seen: Option<IpAddr>,
    /// The last failure, for `status`.
    pub last_error: Option<String>,
    /// Identical failures in a row (the first is logged as a warning).
    pub repeated_errors: u32,
    /// Removed by a reload: kept only so that late IKE events find it.
    pub removed: bool,
    /// A reload changed settings that need a new IKE SA: initiate (per
    /// `auto=`) once the old one is down.
    pub restart_on_down: bool,
    /// Route-based: the carrier state last asked of the shell.
    pub link_up: bool,
}

impl Tunnel {
    pub fn new(id: TunnelId, plan: ConnPlan, conn: ConnId) -> Tunnel {
        Tunnel {
            id,
            plan,
            conn,
            current: None,
            installed: Vec::new(),
            pending: Vec::new(),
            retiring: Vec::new(),
            ike_up: false,
            ike_spis: None,
            connecting: false,
            peer_dead: false,
            attempts: 0,
            retry_at: None,
            parked: None,
            last_rekey: None,
            child_rekeys: 0,
            ike_rekeys: 0,
            dpd_failures: 0,
            established_at: None,
            remote_seen: None,
            last_error: None,
            repeated_errors: 0,
            removed: false,
            restart_on_down: false,
            link_up: false,
        }
    }

    pub fn state(&self) -> TunnelState {
        match (&self.current, self.pending.is_empty()) {
            (Some(_), false) => TunnelState::Rekeying,
            (Some(_), true) => TunnelState::Established,
            (None, _) if self.connecting || self.ike_up => TunnelState::Connecting,
            _ => TunnelState::Down,
        }
    }

    /// The peer's address as `status` shows it: as last seen, else as
    /// configured.
    pub fn peer(&self) -> IpAddr {
        self.remote_seen.unwrap_or(self.plan.remote)
    }

    /// Carries traffic: a Child SA and a peer that answers.
    pub fn usable(&self) -> bool {
        self.current.is_some() && !self.peer_dead
    }

    /// The Child SA (installed or pending) whose outbound SPI is `spi_out`.
    pub fn child_by_out(&self, spi_out: u32) -> Option<ChildRef> {
        self.installed
            .iter()
            .chain(&self.pending)
            .find(|c| c.spi_out == spi_out)
            .copied()
    }

    /// Records a failure; returns true if it differs from the previous one
    /// (worth a warning) and false for a repeat (worth a debug line).
    pub fn fail(&mut self, msg: String) -> bool {
        if self.last_error.as_deref() == Some(msg.as_str()) {
            self.repeated_errors += 1;
            false
        } else {
            self.last_error = Some(msg);
            self.repeated_errors = 1;
            true
        }
    }
}
