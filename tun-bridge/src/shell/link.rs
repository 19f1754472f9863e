//! Which interface each tunnel uses (tunnels with the same
//! `ipsec-interface=` share one), and the carrier of route-based tunnel
//! interfaces: on while any of its tunnels asks for it
//! ([`crate::engine::Action::Link`]), off otherwise, so BGP daemons and
//! `ip monitor` see the tunnel go down and up while the address stays.

use tracing::{info, warn};

use super::Shell;
use crate::engine::TunnelId;

/// Per tunnel (in `TunnelId` order): its interface (`None` once a reload
/// removed the tunnel) and whether it wants the carrier on (policy-based
/// tunnels always do).
#[derive(Default)]
pub(super) struct Links {
    tun_of: Vec<Option<usize>>,
    up: Vec<bool>,
}

impl Links {
    /// Records `tunnel` on interface `tun` (a new tunnel, or one a reload
    /// moved); route-based tunnels start without carrier.
    pub fn set(&mut self, tunnel: TunnelId, tun: usize, route_based: bool) {
        let k = tunnel.0 as usize;
        if self.tun_of.len() <= k {
            self.tun_of.resize(k + 1, None);
            self.up.resize(k + 1, false);
        }
        self.tun_of[k] = Some(tun);
        self.up[k] = !route_based;
    }

    /// Forgets `tunnel` (a reload removed it); returns its interface.
    pub fn remove(&mut self, tunnel: TunnelId) -> Option<usize> {
        let k = tunnel.0 as usize;
        let tun = self.tun_of.get_mut(k)?.take();
        self.up[k] = false;
        tun
    }

    /// The interface of `tunnel`.
    pub fn tun_of(&self, tunnel: TunnelId) -> Option<usize> {
        self.tun_of.get(tunnel.0 as usize).copied().flatten()
    }

    /// Whether any tunnel still uses interface `tun`.
    pub fn in_use(&self, tun: usize) -> bool {
        self.tun_of.contains(&Some(tun))
    }

    /// Records `tunnel`'s request; returns its interface and whether any
    /// tunnel on that interface wants the carrier on.
    fn request(&mut self, tunnel: TunnelId, up: bool) -> Option<(usize, bool)> {
        let k = tunnel.0 as usize;
        let tun = self.tun_of.get(k).copied().flatten()?;
        self.up[k] = up;
        let any = self
            .tun_of
            .iter()
            .zip(&self.up)
            .any(|(&t, &u)| t == Some(tun) && u);
        Some((tun, any))
    }
}

impl Shell {
    /// Carries out [`crate::engine::Action::Link`].
    pub(super) fn set_link(&mut self, tunnel: TunnelId, up: bool) {
        let Some((i, on)) = self.links.request(tunnel, up) else {
            return;
        };
        let Some(dev) = self.tuns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
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
        l.set(TunnelId(0), 0, true);
        l.set(TunnelId(1), 1, true);
        l.set(TunnelId(2), 1, true);
        l.set(TunnelId(3), 2, false);
        assert_eq!(l.tun_of(TunnelId(2)), Some(1));
        assert_eq!(l.request(TunnelId(1), true), Some((1, true)));
        assert_eq!(l.request(TunnelId(2), true), Some((1, true)));
        assert_eq!(l.request(TunnelId(1), false), Some((1, true)));
        assert_eq!(l.request(TunnelId(2), false), Some((1, false)));
        assert_eq!(l.request(TunnelId(0), false), Some((0, false)));
        assert_eq!(l.request(TunnelId(9), true), None);
        // a reload removes tunnel 1: tunnel 2 alone decides interface 1
        assert_eq!(l.remove(TunnelId(1)), Some(1));
        assert!(l.in_use(1));
        assert_eq!(l.request(TunnelId(1), true), None);
        assert_eq!(l.request(TunnelId(2), true), Some((1, true)));
        assert_eq!(l.remove(TunnelId(2)), Some(1));
        assert!(!l.in_use(1));
    }
}
