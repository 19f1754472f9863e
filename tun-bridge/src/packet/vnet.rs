//! The `virtio_net_hdr` that prefixes every packet of a TUN device opened
//! with `IFF_VNET_HDR`: how the kernel describes (and wants to be told
//! about) checksum and segmentation offload of one packet.

/// Length of the `struct virtio_net_hdr` in front of every packet of a
/// device opened with `IFF_VNET_HDR` (the kernel's default size).
pub const VNET_HDR_LEN: usize = 10;

/// `struct virtio_net_hdr`: how the kernel describes (and wants to be told
/// about) checksum and segmentation offload of one packet on a TUN device
/// with `IFF_VNET_HDR`. Fields are little-endian on the wire (x86/arm64:
/// native).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (IP + transport) repeated in every segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The checksum at `csum_start + csum_offset` is partial (pseudo
    /// header only) and must be completed.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// Not a GSO packet.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 super-packet.
    pub const GSO_TCPV4: u8 = 1;
    /// TCP over IPv6 super-packet.
    pub const GSO_TCPV6: u8 = 4;
    /// UDP super-packet (USO), IPv4 or IPv6: `gso_size` payload bytes per
    /// datagram.
    pub const GSO_UDP_L4: u8 = 5;
    /// ECN bit of `gso_type`.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the first [`VNET_HDR_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Writes the header into `b[..VNET_HDR_LEN]`.
    pub fn emit(&self, b: &mut [u8; VNET_HDR_LEN]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit_are_inverse_little_endian() {
        let h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN,
            hdr_len: 0x0134,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(b, [1, 0x81, 0x34, 0x01, 0xa8, 0x05, 20, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..VNET_HDR_LEN - 1]), None);
    }
}
