//! Lifecycle policy of a tunnel, as pure functions: the data path's
//! lifetimes of a Child SA, the SPD entries of a connection, when to
//! re-initiate after an IKE SA went down, and the backoff between attempts.

use std::time::Duration;

use ike_lite::{ChildSa, DownReason};
use ipsec_core::datapath::Direction;
use ipsec_core::sa::{Lifetime, Limits, SaParams};
use ipsec_core::selector::TrafficSelector;

use super::TunnelId;
use crate::config::values::{DpdAction, IpNet, KeyingTries};
use crate::runtime::plan::{ConnPlan, StartMode};

/// Soft packet limit of non-ESN SAs: rekey well before the 32-bit
/// sequence number space runs out.
pub const SOFT_PACKETS_32: u64 = (1 << 32) - (1 << 24);
/// Grace on top of the IKE child lifetime for the data path's own hard
/// limit (ike-lite rekeys and deletes first; this is a backstop).
pub const HARD_GRACE: Duration = Duration::from_secs(30);
/// Longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest wait of a responder-side (`auto=add`) restart, which leaves the
/// initiating side time to come back first.
pub const LISTENER_MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Random extra wait of a responder-side restart, so that two ends that
/// restart at once rarely collide.
pub const LISTENER_JITTER: Duration = Duration::from_secs(2);

/// The ipsec-core parameters of one direction of an ike-lite Child SA,
/// with the data path's lifetime policy applied.
pub fn child_sa_params(c: &ChildSa, dir: Direction, tunnel: TunnelId) -> Result<SaParams, String> {
    let mut p = c.sa_params(dir).map_err(|e| e.to_string())?;
    p.tunnel_id = tunnel;
    p.lifetime = Lifetime {
        soft: Limits {
            packets: (!c.esn).then_some(SOFT_PACKETS_32),
            ..Limits::default()
        },
        hard: Limits {
            time: Some(c.lifetime + HARD_GRACE),
            ..Limits::default()
        },
    };
    Ok(p)
}

fn prefix_selector(n: &IpNet) -> Result<TrafficSelector, String> {
    TrafficSelector::from_prefix(n.addr, n.prefix).map_err(|e| format!("{n}: {e:?}"))
}

/// The SPD entries (local, remote selector pairs of one address family) of
/// a connection: every configured local subnet with every remote one, the
/// outer addresses where no subnet is configured.
pub fn policy_selectors(
    plan: &ConnPlan,
) -> Result<Vec<(TrafficSelector, TrafficSelector)>, String> {
    let side = |nets: &[IpNet], host| -> Result<Vec<TrafficSelector>, String> {
        if nets.is_empty() {
            Ok(vec![TrafficSelector::host(host)])
        } else {
            nets.iter().map(prefix_selector).collect()
        }
    };
    let locals = side(&plan.local_subnets, plan.local)?;
    let remotes = side(&plan.remote_subnets, plan.remote)?;
    let mut out = Vec::new();
    for l in &locals {
        for r in &remotes {
            if l.start.is_ipv4() == r.start.is_ipv4() {
                out.push((*l, *r));
            }
        }
    }
    Ok(out)
}

/// What a tunnel does after its last IKE SA went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Nothing: deleted on purpose, or nobody to call.
    Never,
    /// Wait for traffic (an ACQUIRE from the data path): `dpdaction=hold`.
    OnTraffic,
    /// Re-initiate after the backoff delay.
    After,
    /// `keyingtries` used up.
    GiveUp,
}

/// How long the inbound half of a rekeyed Child SA stays installed after
/// its DELETE, for packets the peer sent before it switched (strongSwan's
/// `delete_rekeyed_delay`, also 5 s).
pub const RETIRE_DELAY: Duration = Duration::from_secs(5);

/// The restart decision for `plan` whose IKE SA went down for `reason`
/// after `attempts` attempts since the last success; `was_up` tells an
/// established SA (a timeout is then the DPD verdict, handled per
/// `dpdaction`) from a failed attempt.
pub fn restart_after_down(
    plan: &ConnPlan,
    reason: DownReason,
    was_up: bool,
    attempts: u32,
) -> Restart {
    if matches!(reason, DownReason::LocalDelete | DownReason::InitialContact)
        || plan.remote.is_unspecified()
    {
        return Restart::Never;
    }
    let dead_peer = was_up && matches!(reason, DownReason::Timeout);
    let restart = if dead_peer {
        match plan.dpd_action {
            DpdAction::Restart | DpdAction::RestartByPeer => true,
            DpdAction::Hold => return Restart::OnTraffic,
            DpdAction::Clear => return Restart::Never,
            // DPD only logs: an always-up connection comes back.
            DpdAction::None => plan.start == StartMode::Initiate,
        }
    } else {
        plan.start == StartMode::Initiate
    };
    if !restart {
        return Restart::Never;
    }
    if matches!(plan.keying_tries, KeyingTries::Count(n) if attempts >= n) {
        return Restart::GiveUp;
    }
    Restart::After
}

/// Wait before attempt `attempts + 1`: doubling from 1 s up to
/// [`MAX_BACKOFF`]; a listener (`auto=add`) waits at least
/// [`LISTENER_MIN_BACKOFF`] plus up to [`LISTENER_JITTER`] chosen by
/// `random` (uniform in `0..1`).
pub fn backoff(attempts: u32, initiator: bool, random: f64) -> Duration {
    let base = Duration::from_secs(1 << attempts.min(5)).min(MAX_BACKOFF);
    if initiator {
        base
    } else {
        base.max(LISTENER_MIN_BACKOFF) + LISTENER_JITTER.mul_f64(random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let d: Vec<u64> = (0..10).map(|a| backoff(a, true, 0.0).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
        assert_eq!(backoff(0, false, 0.0), LISTENER_MIN_BACKOFF);
        assert_eq!(
            backoff(0, false, 1.0),
            LISTENER_MIN_BACKOFF + LISTENER_JITTER
        );
        assert_eq!(backoff(9, false, 0.5), MAX_BACKOFF + LISTENER_JITTER / 2);
    }
}
