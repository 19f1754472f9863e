//! Which interface each tunnel uses (tunnels with the same
//! `ipsec-interface=` share one), and the carrier of route-based tunnel
//! interfaces: on while any of its tunnels asks for it
//! ([`crate::engine::Action::Link`]), off otherwise, so BGP daemons and
//! `ip monitor` see the tunnel go down and up while the address stays.

use tracing::{info, warn};

use super::Shell;
use crate::engine::TunnelId;

/// Per tunnel (in `TunnelId` order): its interface and whether it wants
/// the carrier on (policy-based tunnels always do).
#[derive(Default)]
pub(super) struct Links {
    tun_of: Vec<usize>,
    up: Vec<bool>,
}

impl Links {
    /// Records the next tunnel: on interface `tun`; route-based tunnels
    /// start without carrier.
    pub fn add(&mut self, tun: usize, route_based: bool) {
        self.tun_of.push(tun);
        self.up.push(!route_based);
    }

    /// The interface of `tunnel`.
    pub fn tun_of(&self, tunnel: TunnelId) -> Option<usize> {
        self.tun_of.get(tunnel.0 as usize).copied()
    }

    /// Records `tunnel`'s request; returns its interface and whether any
    /// tunnel on that interface wants the carrier on.
    fn request(&mut self, tunnel: TunnelId, up: bool) -> Option<(usize, bool)> {
        let k = tunnel.0 as usize;
        *self.up.get_mut(k)? = up;
        let tun = self.tun_of[k];
        let any = self
            .tun_of
            .iter()
            .zip(&self.up)
            .any(|(&t, &u)| t == tun && u);
        Some((tun, any))
    }
}

impl Shell {
    /// Carries out [`crate::engine::Action::Link`].
    pub(super) fn set_link(&mut self, tunnel: TunnelId, up: bool) {
        let Some((i, on)) = self.links.request(tunnel, up) else {
            return;
        };
        let dev = &mut self.tuns[i];
        if dev.carrier == Some(on) {
            return;
        }
        match dev.tun.set_carrier(on) {
            Ok(()) => {
                dev.carrier = Some(on);
                info!(dev = %dev.tun.name(), carrier = on, "tunnel interface {}", if on { "up" } else { "down" });
            }
            Err(e) => warn!(dev = %dev.tun.name(), "TUNSETCARRIER {on}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_interface_carrier_is_any_of_its_tunnels() {
        let mut l = Links::default();
        l.add(0, true);
        l.add(1, true);
        l.add(1, true);
        l.add(2, false);
        assert_eq!(l.tun_of(TunnelId(2)), Some(1));
        assert_eq!(l.request(TunnelId(1), true), Some((1, true)));
        assert_eq!(l.request(TunnelId(2), true), Some((1, true)));
        assert_eq!(l.request(TunnelId(1), false), Some((1, true)));
        assert_eq!(l.request(TunnelId(2), false), Some((1, false)));
        assert_eq!(l.request(TunnelId(0), false), Some((0, false)));
        assert_eq!(l.request(TunnelId(9), true), None);
    }
}
