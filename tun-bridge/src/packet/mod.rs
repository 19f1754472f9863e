//! Pure byte work on packets: no IO, no system calls, no clock reading.
//!
//! Everything here takes caller-owned buffers and reads them through
//! ipsec-core's checked wire views (`ipsec_core::wire`); every checksum is
//! computed by `ipsec_core::wire::checksum`, the one implementation in the
//! workspace.
//! * [`forward`]: the per-packet path between a TUN device and ESP
//!   (buffers + `&DataPath`), and UDP/4500 classification.
//! * [`mss`]: TCP MSS clamping and the tunnel MTU/MSS computation.
//! * [`icmp`]: ICMP "fragmentation needed" / ICMPv6 "packet too big".
//! * [`offload`]: TSO/USO splitting, GRO coalescing and partial checksum
//!   completion for `IFF_VNET_HDR` TUN devices.
//! * [`vnet`]: the `virtio_net_hdr` in front of those devices' packets.

pub mod forward;
pub mod icmp;
pub mod mss;
pub mod offload;
pub mod vnet;
