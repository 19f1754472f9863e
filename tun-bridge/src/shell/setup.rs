//! Start-up of the IO shell: data-path tuning from the environment, the
//! outer sockets of each local address, and one TUN device per tunnel.

use std::cell::Cell;
use std::net::IpAddr;

use tracing::{info, warn};

use super::{TOKEN_SOCK, TOKEN_TUN};
use crate::engine::TunnelId;
use crate::packet::mss::TunnelMtu;
use crate::runtime::plan::ConnPlan;
use crate::runtime::Error;
use crate::sys::netlink::Netlink;
use crate::sys::poll::{Interest, Poller, Token};
use crate::sys::tun::{Tun, TunOptions};
use crate::sys::udp::{IkeSockets, RawEspSocket, BATCH_MAX};

/// Receive/send buffer of the ESP sockets (`TUN_BRIDGE_SOCKBUF` overrides).
const ESP_SOCKBUF: usize = 4 << 20;
/// TUN txqueuelen (`TUN_BRIDGE_TXQLEN` overrides). The TUN driver never
/// stops its queue: packets the kernel routes into the tunnel while this
/// loop is descheduled wait in a ring of this many entries, and the rest
/// are dropped. The kernel default (500) lost 8 % of a 150k pps 64-byte
/// UDP flow on two shared cores; 5000 lost < 1 % at 250k pps, and ping
/// under a 4-stream TCP load stayed at 3.5 ms (4.1 ms with 500).
const TUN_TXQLEN: Option<u32> = Some(5000);

/// Data-path tuning read once from the environment (for measurements):
/// `TUN_BRIDGE_OFFLOAD=0` opens TUNs without `IFF_VNET_HDR` (no TSO/GRO);
/// `TUN_BRIDGE_BATCH=N` (1..=64) caps packets per `recvmmsg`/`sendmmsg`;
/// `TUN_BRIDGE_SOCKBUF=bytes` sets the ESP socket buffers;
/// `TUN_BRIDGE_TXQLEN=N` sets the TUN txqueuelen;
/// `TUN_BRIDGE_GSO=0` / `TUN_BRIDGE_GRO=0` turn off UDP segmentation
/// offload on send / UDP receive coalescing on the 4500 socket;
/// `TUN_BRIDGE_USO=0` keeps UDP super-packets off the TUNs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tuning {
    pub offload: bool,
    /// UDP GSO for ESP-in-UDP sends.
    pub gso: bool,
    /// UDP GRO on the 4500 sockets.
    pub gro: bool,
    /// Offer `TUN_F_USO4/6` to the TUNs.
    pub uso: bool,
    pub batch: usize,
    /// SO_RCVBUF/SO_SNDBUF of the ESP sockets (raw and UDP/4500).
    pub sockbuf: usize,
    /// TUN txqueuelen (None: the kernel default).
    pub txqlen: Option<u32>,
}

impl Tuning {
    pub fn from_env() -> Tuning {
        let on = |name: &str| std::env::var(name).map_or(true, |v| v != "0");
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        Tuning {
            offload: on("TUN_BRIDGE_OFFLOAD"),
            gso: on("TUN_BRIDGE_GSO"),
            gro: on("TUN_BRIDGE_GRO"),
            uso: on("TUN_BRIDGE_USO"),
            batch: num("TUN_BRIDGE_BATCH")
                .unwrap_or(BATCH_MAX)
                .clamp(1, BATCH_MAX),
            sockbuf: num("TUN_BRIDGE_SOCKBUF")
                .unwrap_or(ESP_SOCKBUF)
                .clamp(64 << 10, 64 << 20),
            txqlen: num("TUN_BRIDGE_TXQLEN")
                .map(|v| v.clamp(16, 10_000) as u32)
                .or(TUN_TXQLEN),
        }
    }
}

/// Outer sockets of one local address.
pub(super) struct LocalSocks {
    pub ip: IpAddr,
    pub ike: IkeSockets,
    pub raw: Option<RawEspSocket>,
    /// ESP-in-UDP sends use UDP GSO (off after the kernel refused it once).
    pub gso: Cell<bool>,
}

/// Binds UDP 500/4500 and a raw ESP socket on every distinct local
/// address of `plans` that `socks` does not have yet, registered with
/// `poller` (socket set `j` uses tokens `TOKEN_SOCK + 4j` .. `+ 2`).
pub(super) fn open_sockets(
    socks: &mut Vec<LocalSocks>,
    plans: &[ConnPlan],
    tuning: &Tuning,
    poller: &Poller,
) -> Result<(), Error> {
    for p in plans {
        if socks.iter().any(|s| s.ip == p.local) {
            continue;
        }
        let ike = IkeSockets::bind(p.local)
            .map_err(|e| format!("bind IKE sockets on {}:500/4500: {e}", p.local))?;
        let _ = ike.ike.set_buffer_sizes(1 << 20, 1 << 20);
        let _ = ike.natt.set_buffer_sizes(tuning.sockbuf, tuning.sockbuf);
        let gso = tuning.gso && ike.natt.gso_supported();
        let gro = tuning.gro && ike.natt.enable_gro().is_ok();
        let raw = match RawEspSocket::open(p.local) {
            Ok(r) => {
                let _ = r.set_buffer_sizes(tuning.sockbuf, tuning.sockbuf);
                Some(r)
            }
            Err(e) => {
                warn!(local = %p.local, "raw ESP socket unavailable ({e}); UDP encapsulation only");
                None
            }
        };
        let base = TOKEN_SOCK + 4 * socks.len() as u64;
        poller.add(&ike.ike, Token(base), Interest::READABLE)?;
        poller.add(&ike.natt, Token(base + 1), Interest::READABLE)?;
        if let Some(r) = &raw {
            poller.add(r, Token(base + 2), Interest::READABLE)?;
        }
        info!(local = %p.local, raw_esp = raw.is_some(), udp_gso = gso, udp_gro = gro, "listening on UDP 500/4500");
        socks.push(LocalSocks {
            ip: p.local,
            ike,
            raw,
            gso: Cell::new(gso),
        });
    }
    Ok(())
}

/// What the sockets decide about a plan: without a raw ESP socket on its
/// local address, ESP goes in UDP.
pub(super) fn adapt_plan(socks: &[LocalSocks], plan: &mut ConnPlan) {
    if socks.iter().any(|s| s.ip == plan.local && s.raw.is_none()) {
        plan.peer.force_encap = true;
    }
}

/// A tunnel interface and the drops counted in the IO shell.
pub(super) struct TunDev {
    pub tun: Tun,
    /// The tunnels on it (more than one: a shared `ipsec-interface=`).
    pub tunnels: Vec<TunnelId>,
    /// The carrier as last set (`None`: never touched, on).
    pub carrier: Option<bool>,
    /// The TUN takes UDP super-packets (`TUN_F_USO4`/`6` accepted).
    pub uso: bool,
    pub ifindex: u32,
    /// MTU and MSS values of the tunnel.
    pub mtu: TunnelMtu,
    /// Source of ICMP "too big" replies (the peer's inside address).
    pub remote_inside: Option<IpAddr>,
    /// This end's inside address, as set on the interface.
    pub inside: Option<(IpAddr, u8)>,
    pub drops: [u64; super::LocalDrop::COUNT],
}

/// Opens the interface of `plan` with its MTU, txqueuelen, inside address
/// and offloads and brings it up (see [`register_tun`]); the caller adds
/// the tunnels that use it to `tunnels`.
pub(super) fn open_tun(
    plan: &ConnPlan,
    tuning: &Tuning,
    nl: &mut Netlink,
) -> Result<TunDev, Error> {
    let mut opts = TunOptions::new(&plan.ifname);
    opts.vnet_hdr = tuning.offload;
    let tun = Tun::open(&opts)
        .map_err(|e| format!("conn {}: open TUN {}: {e}", plan.name, plan.ifname))?;
    let mut uso = false;
    if tun.vnet_hdr() {
        // TCP (and, since Linux 6.2, UDP) super-packets in and out (split
        // and coalesced here), checksums left to us.
        let f = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        if tuning.uso
            && tun
                .set_offload(f | libc::TUN_F_USO4 | libc::TUN_F_USO6)
                .is_ok()
        {
            uso = true;
        } else if let Err(e) = tun.set_offload(f) {
            warn!(conn = %plan.name, "TUN offloads refused ({e}); one packet per read");
        }
    }
    let ifindex = tun.ifindex()?;
    nl.set_mtu(ifindex, u32::from(plan.mtu.mtu))?;
    if let Some(q) = tuning.txqlen {
        if let Err(e) = nl.set_txqlen(ifindex, q) {
            warn!(conn = %plan.name, "txqueuelen {q}: {e}");
        }
    }
    add_inside(nl, ifindex, plan)?;
    // A route-based interface starts without carrier (the engine's first
    // Action::Link says the same): nothing, not even the kernel's own
    // IPv6 router solicitations, may enter it before the Child SA, or an
    // auto=add end would initiate a second IKE SA on that traffic.
    let carrier = if plan.route_based {
        match tun.set_carrier(false) {
            Ok(()) => Some(false),
            Err(e) => {
                warn!(conn = %plan.name, "TUNSETCARRIER: {e}; the interface stays up while the tunnel is down");
                None
            }
        }
    } else {
        None
    };
    nl.set_link_up(ifindex, true)?;
    tun.queue(0).ok_or("TUN without a queue")?;
    info!(
        conn = %plan.name, tun = %tun.name(), mtu = plan.mtu.mtu,
        local = %plan.local, peer = %plan.remote,
        mode = ?plan.start, "tunnel interface ready"
    );
    Ok(TunDev {
        tun,
        tunnels: Vec::new(),
        carrier,
        uso,
        ifindex,
        mtu: plan.mtu,
        remote_inside: plan.remote_inside,
        inside: plan.inside,
        drops: [0; super::LocalDrop::COUNT],
    })
}

/// Registers interface `k` with `poller`.
pub(super) fn register_tun(dev: &TunDev, k: usize, poller: &Poller) -> Result<(), Error> {
    let q = dev.tun.queue(0).ok_or("TUN without a queue")?;
    poller.add(q, Token(TOKEN_TUN + k as u64), Interest::READABLE)?;
    Ok(())
}

/// Brings an open TUN to `plan`'s MTU and inside addresses (a reload).
pub(super) fn reconfigure_tun(
    dev: &mut TunDev,
    plan: &ConnPlan,
    nl: &mut Netlink,
) -> Result<(), Error> {
    if dev.mtu != plan.mtu {
        nl.set_mtu(dev.ifindex, u32::from(plan.mtu.mtu))?;
        dev.mtu = plan.mtu;
    }
    if dev.inside != plan.inside {
        if let Some((a, len)) = dev.inside {
            if let Err(e) = nl.del_address(dev.ifindex, a, len) {
                warn!(tun = %dev.tun.name(), "remove inside address {a}/{len}: {e}");
            }
        }
        add_inside(nl, dev.ifindex, plan)?;
        dev.inside = plan.inside;
    }
    dev.remote_inside = plan.remote_inside;
    info!(tun = %dev.tun.name(), mtu = plan.mtu.mtu, "tunnel interface reconfigured");
    Ok(())
}

/// Adds `tunnel` to an interface an earlier tunnel opened (the same
/// `ipsec-interface=`): its inside address goes on the interface too.
pub(super) fn share_tun(
    dev: &mut TunDev,
    tunnel: TunnelId,
    plan: &ConnPlan,
    nl: &mut Netlink,
) -> Result<(), Error> {
    add_inside(nl, dev.ifindex, plan)?;
    dev.tunnels.push(tunnel);
    if dev.remote_inside.is_none() {
        dev.remote_inside = plan.remote_inside;
    }
    info!(conn = %plan.name, tun = %dev.tun.name(), "tunnel shares interface");
    Ok(())
}

/// Puts the plan's inside addresses on the interface (one that is already
/// there is fine: the interface survived a restart of the peer, or the
/// address was configured by hand).
fn add_inside(nl: &mut Netlink, ifindex: u32, plan: &ConnPlan) -> Result<(), Error> {
    for &(a, len) in plan.inside.iter().chain(&plan.inside_extra) {
        match nl.add_address(ifindex, a, len) {
            Err(e) if !e.is_exists() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}
