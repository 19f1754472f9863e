//! The two-site topologies: host A — gateway A — WAN — gateway B — host B,
//! and the same with gateway A behind a NAT router ([`NatSites`]).

use crate::{Lab, Result};
use std::net::Ipv4Addr;

/// Addresses and prefixes of a [`TwoSites`] topology. The defaults are those
/// of the shell harness (`topo_s2s_up`): site A 10.1.0.0/24, WAN
/// 192.0.2.0/24, site B 10.2.0.0/24; gateways `.1`, hosts `.2`.
#[derive(Debug, Clone)]
pub struct TwoSitesConfig {
    /// Site A inner network (host A is `.2`, gateway A `.1`).
    pub site_a: (Ipv4Addr, u8),
    /// WAN network (gateway A `.1`, gateway B `.2`).
    pub wan: (Ipv4Addr, u8),
    /// Site B inner network (host B is `.2`, gateway B `.1`).
    pub site_b: (Ipv4Addr, u8),
    /// MTU of the WAN veth pair (1500 by default).
    pub wan_mtu: u16,
}

impl Default for TwoSitesConfig {
    fn default() -> Self {
        TwoSitesConfig {
            site_a: (Ipv4Addr::new(10, 1, 0, 0), 24),
            wan: (Ipv4Addr::new(192, 0, 2, 0), 24),
            site_b: (Ipv4Addr::new(10, 2, 0, 0), 24),
            wan_mtu: 1500,
        }
    }
}

fn host(net: (Ipv4Addr, u8), n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.0) + n)
}

/// A built two-site topology (namespaces belong to the [`Lab`] that built
/// it and disappear with it).
///
/// Interfaces: `lan0` in the hosts, `lan1` (inner) and `wan0` (outer) in the
/// gateways. Hosts have a default route via their gateway; gateways forward
/// IPv4 but have no route to the other site until [`TwoSites::plain_routes`]
/// or a tunnel provides one.
#[derive(Debug, Clone)]
pub struct TwoSites {
    /// Namespace of host A.
    pub host_a: String,
    /// Namespace of gateway A.
    pub gw_a: String,
    /// Namespace of gateway B.
    pub gw_b: String,
    /// Namespace of host B.
    pub host_b: String,
    /// The configuration used.
    pub cfg: TwoSitesConfig,
}

impl TwoSites {
    /// Name of the hosts' interface.
    pub const HOST_IF: &'static str = "lan0";
    /// Name of a gateway's inner interface.
    pub const GW_LAN_IF: &'static str = "lan1";
    /// Name of a gateway's WAN interface.
    pub const GW_WAN_IF: &'static str = "wan0";

    /// Build the topology in `lab`.
    pub fn up(lab: &mut Lab, cfg: TwoSitesConfig) -> Result<TwoSites> {
        let host_a = lab.add_netns("hosta")?;
        let gw_a = lab.add_netns("gwa")?;
        let gw_b = lab.add_netns("gwb")?;
        let host_b = lab.add_netns("hostb")?;
        let t = TwoSites {
            host_a,
            gw_a,
            gw_b,
            host_b,
            cfg,
        };
        let cidr = |a: Ipv4Addr, p: u8| format!("{a}/{p}");
        let (sa, wan, sb) = (t.cfg.site_a, t.cfg.wan, t.cfg.site_b);
        lab.veth(
            &t.host_a,
            Self::HOST_IF,
            Some(&cidr(t.host_a_addr(), sa.1)),
            &t.gw_a,
            Self::GW_LAN_IF,
            Some(&cidr(t.gw_a_inner(), sa.1)),
        )?;
        lab.veth(
            &t.gw_a,
            Self::GW_WAN_IF,
            Some(&cidr(t.gw_a_outer(), wan.1)),
            &t.gw_b,
            Self::GW_WAN_IF,
            Some(&cidr(t.gw_b_outer(), wan.1)),
        )?;
        let mtu = t.cfg.wan_mtu.to_string();
        lab.ip_in(&t.gw_a, &["link", "set", Self::GW_WAN_IF, "mtu", &mtu])?;
        lab.ip_in(&t.gw_b, &["link", "set", Self::GW_WAN_IF, "mtu", &mtu])?;
        lab.veth(
            &t.gw_b,
            Self::GW_LAN_IF,
            Some(&cidr(t.gw_b_inner(), sb.1)),
            &t.host_b,
            Self::HOST_IF,
            Some(&cidr(t.host_b_addr(), sb.1)),
        )?;
        lab.ip_in(
            &t.host_a,
            &[
                "route",
                "add",
                "default",
                "via",
                &t.gw_a_inner().to_string(),
            ],
        )?;
        lab.ip_in(
            &t.host_b,
            &[
                "route",
                "add",
                "default",
                "via",
                &t.gw_b_inner().to_string(),
            ],
        )?;
        lab.forwarding_on(&t.gw_a)?;
        lab.forwarding_on(&t.gw_b)?;
        Ok(t)
    }

    /// Route each site's prefix across the WAN in plain text (no tunnel):
    /// the ceiling path.
    pub fn plain_routes(&self, lab: &Lab) -> Result<()> {
        lab.ip_in(
            &self.gw_a,
            &[
                "route",
                "replace",
                &self.site_b_cidr(),
                "via",
                &self.gw_b_outer().to_string(),
            ],
        )?;
        lab.ip_in(
            &self.gw_b,
            &[
                "route",
                "replace",
                &self.site_a_cidr(),
                "via",
                &self.gw_a_outer().to_string(),
            ],
        )?;
        Ok(())
    }

    /// Host A's address.
    pub fn host_a_addr(&self) -> Ipv4Addr {
        host(self.cfg.site_a, 2)
    }
    /// Host B's address.
    pub fn host_b_addr(&self) -> Ipv4Addr {
        host(self.cfg.site_b, 2)
    }
    /// Gateway A's address on site A.
    pub fn gw_a_inner(&self) -> Ipv4Addr {
        host(self.cfg.site_a, 1)
    }
    /// Gateway B's address on site B.
    pub fn gw_b_inner(&self) -> Ipv4Addr {
        host(self.cfg.site_b, 1)
    }
    /// Gateway A's WAN address.
    pub fn gw_a_outer(&self) -> Ipv4Addr {
        host(self.cfg.wan, 1)
    }
    /// Gateway B's WAN address.
    pub fn gw_b_outer(&self) -> Ipv4Addr {
        host(self.cfg.wan, 2)
    }
    /// Site A as `a.b.c.d/len`.
    pub fn site_a_cidr(&self) -> String {
        format!("{}/{}", self.cfg.site_a.0, self.cfg.site_a.1)
    }
    /// Site B as `a.b.c.d/len`.
    pub fn site_b_cidr(&self) -> String {
        format!("{}/{}", self.cfg.site_b.0, self.cfg.site_b.1)
    }
}

/// A two-site topology with gateway A behind a NAT router:
/// host A — gateway A — (private net) — router (nftables masquerade) —
/// WAN — gateway B — host B.
///
/// The router holds gateway A's public address: [`TwoSites::gw_a_outer`]
/// of [`NatSites::sites`] is the router's WAN address, the one gateway B
/// sees. Gateway A's WAN interface sits in [`NatSites::private`] (gateway A
/// `.2`, router `.1`) with a default route via the router. Interfaces:
/// `lan0` (private side) and `wan0` in the router; the rest as in
/// [`TwoSites`].
#[derive(Debug, Clone)]
pub struct NatSites {
    /// The sites; `gw_a_outer()` is the router's (public) WAN address.
    pub sites: TwoSites,
    /// Namespace of the NAT router.
    pub router: String,
    /// Gateway A's private network.
    pub private: (Ipv4Addr, u8),
}

impl NatSites {
    /// Name of the router's private-side interface.
    pub const ROUTER_LAN_IF: &'static str = "lan0";
    /// Name of the router's WAN interface (masquerade on output).
    pub const ROUTER_WAN_IF: &'static str = "wan0";
    /// nftables table of the masquerade rule.
    pub const NFT_TABLE: &'static str = "labnat";

    /// Build the topology in `lab` with gateway A in `private` (needs
    /// `nft`, from the nftables package).
    pub fn up(lab: &mut Lab, cfg: TwoSitesConfig, private: (Ipv4Addr, u8)) -> Result<NatSites> {
        let host_a = lab.add_netns("hosta")?;
        let gw_a = lab.add_netns("gwa")?;
        let router = lab.add_netns("nat")?;
        let gw_b = lab.add_netns("gwb")?;
        let host_b = lab.add_netns("hostb")?;
        let me = NatSites {
            sites: TwoSites {
                host_a,
                gw_a,
                gw_b,
                host_b,
                cfg,
            },
            router,
            private,
        };
        let t = &me.sites;
        let cidr = |a: Ipv4Addr, p: u8| format!("{a}/{p}");
        let (sa, wan, sb) = (t.cfg.site_a, t.cfg.wan, t.cfg.site_b);
        lab.veth(
            &t.host_a,
            TwoSites::HOST_IF,
            Some(&cidr(t.host_a_addr(), sa.1)),
            &t.gw_a,
            TwoSites::GW_LAN_IF,
            Some(&cidr(t.gw_a_inner(), sa.1)),
        )?;
        lab.veth(
            &t.gw_a,
            TwoSites::GW_WAN_IF,
            Some(&cidr(me.gw_a_private(), private.1)),
            &me.router,
            Self::ROUTER_LAN_IF,
            Some(&cidr(me.router_private(), private.1)),
        )?;
        lab.veth(
            &me.router,
            Self::ROUTER_WAN_IF,
            Some(&cidr(t.gw_a_outer(), wan.1)),
            &t.gw_b,
            TwoSites::GW_WAN_IF,
            Some(&cidr(t.gw_b_outer(), wan.1)),
        )?;
        let mtu = t.cfg.wan_mtu.to_string();
        for (ns, dev) in [
            (&t.gw_a, TwoSites::GW_WAN_IF),
            (&me.router, Self::ROUTER_LAN_IF),
            (&me.router, Self::ROUTER_WAN_IF),
            (&t.gw_b, TwoSites::GW_WAN_IF),
        ] {
            lab.ip_in(ns, &["link", "set", dev, "mtu", &mtu])?;
        }
        lab.veth(
            &t.gw_b,
            TwoSites::GW_LAN_IF,
            Some(&cidr(t.gw_b_inner(), sb.1)),
            &t.host_b,
            TwoSites::HOST_IF,
            Some(&cidr(t.host_b_addr(), sb.1)),
        )?;
        for (ns, via) in [
            (&t.host_a, t.gw_a_inner()),
            (&t.host_b, t.gw_b_inner()),
            (&t.gw_a, me.router_private()),
        ] {
            lab.ip_in(ns, &["route", "add", "default", "via", &via.to_string()])?;
        }
        lab.forwarding_on(&t.gw_a)?;
        lab.forwarding_on(&t.gw_b)?;
        lab.forwarding_on(&me.router)?;
        let table = Self::NFT_TABLE;
        lab.exec(&me.router, &["nft", "add", "table", "ip", table])?;
        lab.exec(
            &me.router,
            &[
                "nft",
                "add",
                "chain",
                "ip",
                table,
                "post",
                "{ type nat hook postrouting priority 100 ; }",
            ],
        )?;
        lab.exec(
            &me.router,
            &[
                "nft",
                "add",
                "rule",
                "ip",
                table,
                "post",
                "oifname",
                Self::ROUTER_WAN_IF,
                "masquerade",
            ],
        )?;
        Ok(me)
    }

    /// Gateway A's (private) WAN address.
    pub fn gw_a_private(&self) -> Ipv4Addr {
        host(self.private, 2)
    }

    /// The router's private-side address (gateway A's default route).
    pub fn router_private(&self) -> Ipv4Addr {
        host(self.private, 1)
    }

    /// Gateway A's private network as `a.b.c.d/len`.
    pub fn private_cidr(&self) -> String {
        format!("{}/{}", self.private.0, self.private.1)
    }
}
