//! Sets up a pair of ESP SAs by hand (what an IKE daemon would install),
//! encapsulates one IPv4 packet on gateway A and decapsulates it on gateway
//! B, printing what happens at each step.
//!
//! Run with `cargo run -p ipsec-core --example esp_pair`.

use std::time::Instant;

use ipsec_core::buf::{PacketBuf, RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{DataPath, InboundAction, OutboundAction, TunnelId};
use ipsec_core::sa::{SaParams, SecretBytes, TunnelEndpoints, UdpEncap};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};
use ipsec_core::wire::{EspPacket, FlowKey, Ipv4Packet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Instant::now();
    let suite = Suite::AES128_GCM16;
    let net_a = TrafficSelector::from_prefix("10.1.0.0".parse()?, 16)?;
    let net_b = TrafficSelector::from_prefix("10.2.0.0".parse()?, 16)?;
    // Keys would come from IKEv2 KEYMAT; fixed bytes here.
    let enc_key = SecretBytes::new((0..suite.enc_key_len()?).map(|i| i as u8).collect());
    let sa_params = |spi, local, remote, ts_l, ts_r| {
        let mut p = SaParams::new(
            spi,
            suite,
            enc_key.clone(),
            SecretBytes::default(),
            TunnelEndpoints { local, remote },
        );
        p.esn = true;
        p.local_ts = vec![ts_l];
        p.remote_ts = vec![ts_r];
        p.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
        p
    };
    let (gw_a, gw_b) = ("198.51.100.1".parse()?, "203.0.113.9".parse()?);
    // Each gateway has one tunnel; the default SaParams::tunnel_id (0)
    // names it.
    let tunnel = TunnelId(0);

    let mut a = DataPath::default();
    a.add_policy(Policy {
        id: PolicyId(1),
        tunnel,
        priority: 0,
        local: net_a,
        remote: net_b,
        action: Action::Protect,
    })?;
    a.install_outbound(
        PolicyId(1),
        &sa_params(0xc0de_0001, gw_a, gw_b, net_a, net_b),
        now,
    )?;
    let mut b = DataPath::default();
    b.install_inbound(&sa_params(0xc0de_0001, gw_b, gw_a, net_b, net_a), now)?;

    // An ICMP echo request from 10.1.0.5 to 10.2.0.7, as read from a TUN device.
    let mut inner = vec![
        0x45, 0, 0, 28, 0x12, 0x34, 0, 0, 64, 1, 0, 0, 10, 1, 0, 5, 10, 2, 0, 7, 8, 0, 0xf7, 0xff,
        0, 0, 0, 0,
    ];
    Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
    let (flow, _) = FlowKey::parse(&inner)?;
    println!("inner packet: {} bytes, {:?}", inner.len(), flow);

    let mut buf = PacketBuf::with_capacity(RECOMMENDED_HEADROOM, 1500, RECOMMENDED_TAILROOM);
    buf.load(RECOMMENDED_HEADROOM, &inner)?;
    match a.process_outbound(tunnel, now, &mut buf) {
        OutboundAction::Encapsulated {
            spi,
            endpoints,
            udp_encap,
        } => {
            let esp = EspPacket::new_checked(buf.data())?;
            println!(
                "A encapsulated: SPI {spi:#010x} seq {} -> {} bytes of ESP for {} (UDP {:?})",
                esp.seq(),
                buf.len(),
                endpoints.remote,
                udp_encap.map(|u| u.remote_port)
            );
            println!("  wire: {}", hex(buf.data()));
        }
        other => return Err(format!("A: unexpected {other:?}").into()),
    }

    let wire = buf.data().to_vec();
    match b.process_inbound_udp(now, &mut buf) {
        InboundAction::Inner {
            spi,
            version,
            tunnel,
        } => {
            println!(
                "B decapsulated: SPI {spi:#010x}, {version:?}, {} bytes for {tunnel}",
                buf.len()
            );
            println!("  identical to the original: {}", buf.data() == &inner[..]);
        }
        other => return Err(format!("B: unexpected {other:?}").into()),
    }

    // A replay of the same ESP packet is refused and counted.
    buf.load(RECOMMENDED_HEADROOM, &wire)?;
    println!(
        "B, same packet again: {:?}",
        b.process_inbound_udp(now, &mut buf)
    );
    let stats = b.sad().inbound(0xc0de_0001).ok_or("SA missing")?.stats();
    println!(
        "B inbound SA stats: {} packets, {} bytes, {} replayed",
        stats.packets,
        stats.bytes,
        stats.dropped(ipsec_core::sa::DropReason::Replayed)
    );
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
