//! Per-worker counters, one per drop reason and a few for work done; written by the worker
//! alone and readable from any thread (stats, metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n`: only the owning worker writes, so a load and a store suffice.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds one.
#[inline]
pub fn inc(c: &AtomicU64) {
    add(c, 1);
}

macro_rules! worker_counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Counters of one worker; every dropped packet or message increments exactly one
        /// `drop_*` field.
        #[derive(Debug, Default)]
        pub struct WorkerCounters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl WorkerCounters {
            /// `(name, value)` of every counter, for stats and metrics.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// The value of the counter called `name`.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $(stringify!($name) => Some(self.$name.load(Ordering::Relaxed)),)*
                    _ => None,
                }
            }
        }
    };
}

worker_counters! {
    rx_frames: "Frames received.",
    tx_frames: "Frames handed to the port for transmission.",
    esp_in: "ESP packets decapsulated.",
    esp_out: "ESP packets encapsulated.",
    sip_in: "SIP messages passed to the slowpath.",
    stack_polls: "Per-UE stack polls (only stacks that are due are polled).",
    commands: "Commands executed.",
    ues: "UE stacks created.",
    ues_freed: "UE stacks freed (no connection, no SA set).",
    echo_replies: "ICMP/ICMPv6 echo replies sent.",
    arp_replies: "ARP replies sent.",
    nd_replies: "IPv6 Neighbor Advertisements sent.",
    solicitations: "ARP requests / Neighbor Solicitations sent for unresolved next hops.",
    reasm_completed: "Datagrams reassembled from fragments.",
    sa_sets_drained: "Removed SA sets dropped once everything queued before the removal left.",
    sa_drain_timeouts: "Removed SA sets dropped at SA_DRAIN_LIMIT with bytes still unacknowledged.",
    sa_conns_discarded: "TCP connections discarded without a segment when their SA set was dropped.",
    handoff_out: "Frames handed to the worker that owns their UE (port steering disagreed).",
    handoff_in: "Frames received from another worker for a UE this worker owns.",
    neighbors_shared: "Neighbours learned from ARP/ND here and told to the other workers.",
    neighbors_from_peers: "Neighbours learned from another worker.",
    drop_l2_malformed: "Malformed Ethernet/ARP/ND/IP frame.",
    drop_l2_not_for_us: "Frame or packet not addressed to us.",
    drop_l2_ethertype: "Unsupported ethertype.",
    drop_reasm_malformed: "Malformed fragment.",
    drop_reasm_overlap: "Overlapping fragment (RFC 5722).",
    drop_reasm_duplicate: "Duplicate fragment.",
    drop_reasm_too_big: "Fragment beyond the datagram end or maximum size.",
    drop_reasm_no_memory: "Fragment larger than the reassembly memory.",
    drop_reasm_timeout: "Incomplete datagrams timed out (count of datagrams).",
    drop_reasm_evicted: "Incomplete datagrams evicted for memory (count of datagrams).",
    drop_ip_malformed: "IP packet whose headers cannot be parsed.",
    drop_ip_protocol: "IP protocol other than ESP, TCP, UDP or ICMP echo.",
    drop_esp_unknown_spi: "ESP packet with an SPI not in the SA table.",
    drop_esp_address: "ESP packet whose addresses are not the SA's UE and P-CSCF.",
    drop_esp_stray: "ESP packet for an SA owned by another worker.",
    drop_esp_invalid: "ESP decapsulation failed (ICV, replay, padding, truncation).",
    drop_esp_selector: "Decrypted packet whose ports are not the SA's (TS 33.203 7.1).",
    drop_clear_to_protected: "Unprotected packet to a protected port (port_ps / port_pc).",
    drop_closed_port: "Unprotected packet to a port that is neither SIP nor protected.",
    drop_no_ue: "Protected traffic or command for a UE without a stack.",
    drop_ue_limit: "New UE refused: the worker holds its maximum of UE stacks.",
    drop_local_address: "Packet to another of our addresses than the UE's stack uses.",
    drop_stack_queue_full: "Per-UE stack input queue full.",
    drop_framing: "TCP connection closed because SIP framing failed.",
    drop_event_queue_full: "Event to the slowpath lost: queue full or closed.",
    drop_send_failed: "Send command that could not be queued (no connection, limits).",
    drop_egress_no_sa: "Outbound packet from a protected port with no outbound SA.",
    drop_egress_not_sip: "Outbound packet that is neither TCP nor UDP (e.g. ICMP errors).",
    drop_egress_esp: "ESP encapsulation failed.",
    drop_egress_no_neighbor: "Outbound packet with an unresolved next hop.",
    drop_egress_no_route: "Outbound packet with no route for its address family.",
    drop_egress_too_big: "Outbound frame larger than the link MTU.",
    drop_no_buffer: "Packet buffer pool empty.",
    drop_tx_full: "Transmit ring full.",
    drop_sa_install: "SA set that could not be installed (bad keys, SPI taken, foreign address).",
    drop_handoff_full: "Stray frame lost: the owning worker's handoff ring was full.",
    drop_neighbor_share_full: "Neighbour not told to a worker whose ring was full (it solicits).",
}
