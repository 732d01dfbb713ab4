//! The virtio-net header and device configuration layout (virtio 1.2
//! section 5.1.6 "Device Operation" and 5.1.4 "Device configuration layout").

/// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1: `num_buffers` is always
/// present, so the header is 12 bytes on both queues.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

/// Size of [`VirtioNetHeader`] on the wire.
pub const HEADER_BYTES: usize = core::mem::size_of::<VirtioNetHeader>();

/// `gso_type` for a packet without segmentation offload.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// Offsets in `struct virtio_net_config`.
pub mod config {
    /// `mac[6]`, valid when VIRTIO_NET_F_MAC was negotiated.
    pub const MAC: usize = 0;
    /// `status` (le16), valid when VIRTIO_NET_F_STATUS was negotiated.
    pub const STATUS: usize = 6;
    /// `mtu` (le16), valid when VIRTIO_NET_F_MTU was negotiated.
    pub const MTU: usize = 10;
}

/// Bit of the `status` field: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn header_layout_matches_spec() {
        assert_eq!(HEADER_BYTES, 12);
        assert_eq!(offset_of!(VirtioNetHeader, hdr_len), 2);
        assert_eq!(offset_of!(VirtioNetHeader, csum_start), 6);
        assert_eq!(offset_of!(VirtioNetHeader, num_buffers), 10);
    }
}
