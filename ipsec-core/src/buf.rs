//! Caller-owned packet buffers with headroom and tailroom.
//!
//! A [`PacketBuf`] is storage plus the range holding the current packet.
//! Encapsulation grows the range into the headroom (ESP header, IV, and
//! optionally UDP and outer IPv4 headers) and the tailroom (padding, trailer,
//! ICV); decapsulation shrinks it to the inner packet. The storage is any
//! `AsRef<[u8]> + AsMut<[u8]>` (a `Vec<u8>`, a `Box<[u8]>`, a slice of a
//! larger arena), allocated once by the caller and reused.

use core::net::IpAddr;
use core::ops::Range;

use crate::sa::{TunnelEndpoints, UdpEncap, ESP_MAX_HEADROOM, ESP_MAX_TAILROOM};
use crate::wire::{ipv4, udp, IpProtocol, Ipv4Repr, UdpRepr, WireError};

/// Headroom that covers an outer IPv6 header, UDP, ESP header and the
/// largest IV (40 + 8 + 8 + 16 = 72), rounded up.
pub const RECOMMENDED_HEADROOM: usize = 128;
/// Tailroom that covers the largest padding, trailer and ICV.
pub const RECOMMENDED_TAILROOM: usize = 64;

const _: () = assert!(RECOMMENDED_HEADROOM >= 40 + udp::HEADER_LEN + ESP_MAX_HEADROOM);
const _: () = assert!(RECOMMENDED_TAILROOM >= ESP_MAX_TAILROOM);

/// Storage plus the range of the current packet inside it.
#[derive(Debug, Clone)]
pub struct PacketBuf<S = Vec<u8>> {
    storage: S,
    start: usize,
    end: usize,
}

impl PacketBuf<Vec<u8>> {
    /// Allocates `headroom + capacity + tailroom` zeroed bytes with an empty
    /// packet at `headroom`.
    pub fn with_capacity(headroom: usize, capacity: usize, tailroom: usize) -> Self {
        PacketBuf {
            storage: vec![0; headroom + capacity + tailroom],
            start: headroom,
            end: headroom,
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> PacketBuf<S> {
    /// Wraps storage with an empty packet at `headroom` (clamped to the
    /// storage length).
    pub fn new(storage: S, headroom: usize) -> Self {
        let h = headroom.min(storage.as_ref().len());
        PacketBuf {
            storage,
            start: h,
            end: h,
        }
    }

    /// Copies `packet` in at `headroom`.
    pub fn load(&mut self, headroom: usize, packet: &[u8]) -> Result<(), WireError> {
        let end = headroom
            .checked_add(packet.len())
            .ok_or(WireError::BufferTooSmall)?;
        let dst = self
            .storage
            .as_mut()
            .get_mut(headroom..end)
            .ok_or(WireError::BufferTooSmall)?;
        dst.copy_from_slice(packet);
        self.start = headroom;
        self.end = end;
        Ok(())
    }

    /// The current packet.
    pub fn data(&self) -> &[u8] {
        &self.storage.as_ref()[self.start..self.end]
    }

    /// The current packet, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage.as_mut()[self.start..self.end]
    }

    /// Where the packet lies in the storage.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// Moves the packet range (e.g. after reading `n` bytes into
    /// `storage_mut()[h..]`, call `set_range(h..h + n)`).
    pub fn set_range(&mut self, range: Range<usize>) -> Result<(), WireError> {
        if range.start > range.end || range.end > self.storage.as_ref().len() {
            return Err(WireError::BufferTooSmall);
        }
        self.start = range.start;
        self.end = range.end;
        Ok(())
    }

    /// Bytes free before the packet.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free after the packet.
    pub fn tailroom(&self) -> usize {
        self.storage.as_ref().len() - self.end
    }

    /// Packet length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True if the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The whole storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The whole storage, mutable (the range is unchanged).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Returns the storage.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Prepends a UDP header (RFC 3948) in front of the ESP packet. For
    /// IPv4 the checksum is zero; for IPv6 it is computed.
    pub fn push_udp_header(
        &mut self,
        tunnel: TunnelEndpoints,
        ports: UdpEncap,
    ) -> Result<(), WireError> {
        let start = self
            .start
            .checked_sub(udp::HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        let d = &mut self.storage.as_mut()[start..self.end];
        UdpRepr {
            src_port: ports.local_port,
            dst_port: ports.remote_port,
        }
        .emit(d, tunnel.local, tunnel.remote)?;
        self.start = start;
        Ok(())
    }

    /// Prepends an outer IPv4 header (for raw sockets with `IP_HDRINCL`):
    /// protocol UDP if a UDP header was pushed, ESP otherwise.
    pub fn push_ipv4_header(
        &mut self,
        tunnel: TunnelEndpoints,
        protocol: IpProtocol,
        ttl: u8,
        ident: u16,
    ) -> Result<(), WireError> {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (tunnel.local, tunnel.remote) else {
            return Err(WireError::BadVersion);
        };
        let start = self
            .start
            .checked_sub(ipv4::HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len: self.len(),
            ttl,
            ident,
        }
        .emit(&mut self.storage.as_mut()[start..self.start])?;
        self.start = start;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Packet;

    #[test]
    fn ranges_and_headers() {
        let mut b = PacketBuf::with_capacity(64, 100, 16);
        assert_eq!(b.headroom(), 64);
        assert!(b.is_empty());
        b.load(64, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b.tailroom(), 108);
        let t = TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
        };
        b.push_udp_header(
            t,
            UdpEncap {
                local_port: 4500,
                remote_port: 4501,
            },
        )
        .unwrap();
        b.push_ipv4_header(t, IpProtocol::UDP, 64, 7).unwrap();
        assert_eq!(b.len(), 36);
        let p = Ipv4Packet::new_checked(b.data()).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(&p.payload()[..4], &[0x11, 0x94, 0x11, 0x95]);
        assert!(b.set_range(0..1000).is_err());
        assert!(b.load(200, &[0; 1]).is_err());
        let mut small = PacketBuf::new([0u8; 4], 2);
        assert_eq!(
            small.push_udp_header(
                t,
                UdpEncap {
                    local_port: 1,
                    remote_port: 2
                }
            ),
            Err(WireError::BufferTooSmall)
        );
    }
}
