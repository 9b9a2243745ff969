//! Packet I/O for akagate workers: burst receive/transmit over reusable buffers.
