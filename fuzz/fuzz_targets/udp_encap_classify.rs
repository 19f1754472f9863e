//! RFC 3948 classification of UDP/4500 payloads, plus the wire views an
//! inbound datagram reaches (ESP header, IPv4/IPv6 flow keys, trailer).
#![no_main]

use ipsec_core::wire::{classify_udp_4500, EspPacket, EspTrailer, FlowKey, UdpDatagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify_udp_4500(data) {
        Ok(UdpDatagram::Keepalive) => assert_eq!(data, [0xff]),
        Ok(UdpDatagram::Ike { offset }) => assert_eq!(&data[..offset], [0, 0, 0, 0]),
        Ok(UdpDatagram::Esp) => {
            let p = EspPacket::new_checked(data).expect("classified as ESP");
            assert_ne!(p.spi(), 0);
        }
        Ok(_) => {}
        Err(_) => assert!(data.len() < 8),
    }
    if let Ok((flow, len)) = FlowKey::parse(data) {
        assert!(len <= data.len());
        let _ = flow;
    }
    if let Ok((t, n)) = EspTrailer::parse(data) {
        assert_eq!(n + usize::from(t.pad_len) + 2, data.len());
    }
});
