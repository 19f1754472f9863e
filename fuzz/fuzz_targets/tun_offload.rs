//! TUN offloads over arbitrary input: `Tso` (super-packets the kernel hands
//! over, with any virtio-net header) and `Gro` (decrypted packets from the
//! peer, TCP and UDP) never panic, and what `Gro` merges `Tso` splits back
//! into as many segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tun_bridge::packet::offload::{Gro, Tso};
use tun_bridge::packet::vnet::{VnetHdr, VNET_HDR_LEN};

fn check_merged(merged: &[u8], merged_count: usize) {
    let h = VnetHdr::parse(merged).expect("header");
    if h.gso_type == VnetHdr::GSO_NONE {
        assert_eq!(merged_count, 1);
        return;
    }
    let sup = &merged[VNET_HDR_LEN..];
    let tso = Tso::new(sup, &h).expect("Gro output is splittable");
    assert_eq!(tso.count(), merged_count);
    let mut out = vec![0u8; 65_536];
    for i in 0..tso.count() {
        assert!(tso.segment(sup, i, &mut out).is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < VNET_HDR_LEN + 1 {
        return;
    }
    // Tso on the whole input behind its own header.
    let hdr = VnetHdr::parse(data).expect("long enough");
    let pkt = &data[VNET_HDR_LEN..];
    if let Some(tso) = Tso::new(pkt, &hdr) {
        let mut out = vec![0u8; tso.max_segment_len()];
        for i in 0..tso.count().min(256) {
            if let Some(n) = tso.segment(pkt, i, &mut out) {
                assert!(n <= out.len());
            }
        }
    }
    // Gro over length-prefixed packets (first byte: UDP on/off).
    let mut gro = Gro::new().with_udp(data[0] & 1 == 1);
    let mut rest = &data[1..];
    let mut merged = 0usize;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 2048;
        rest = &rest[2..];
        let p = &rest[..n.min(rest.len())];
        rest = &rest[p.len()..];
        if gro.push(p) {
            merged += 1;
            continue;
        }
        if let Some(m) = gro.finish() {
            let m = m.to_vec();
            check_merged(&m, merged);
        }
        merged = usize::from(gro.push(p));
    }
    if let Some(m) = gro.finish() {
        let m = m.to_vec();
        check_merged(&m, merged);
    }
});
