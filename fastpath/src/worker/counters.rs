//! Per-worker counters, one per drop reason and a few for work done; written by the worker
//! alone and readable from any thread (stats, metrics). The doc comment of each entry is its
//! help text in the `stats` answer's documentation and on the Prometheus endpoint.

pub use crate::counters::{add, inc};

akagate_proto::counters! {
    /// Counters of one worker; every dropped packet or message increments exactly one
    /// `drop_*` field.
    pub struct WorkerCounters => /// A snapshot of [`WorkerCounters`].
    pub struct WorkerCounterValues;
    /// Frames received.
    rx_frames: Counter,
    /// Frames handed to the port for transmission.
    tx_frames: Counter,
    /// IP fragments built from outbound packets above the link MTU (a UDP datagram above the
    /// inner MTU, fragmented after ESP; RFC 4303 3.1.1).
    tx_fragments: Counter,
    /// ESP packets decapsulated.
    esp_in: Counter,
    /// ESP packets encapsulated.
    esp_out: Counter,
    /// SIP messages passed to the slowpath.
    sip_in: Counter,
    /// Per-UE stack polls (only stacks that are due are polled).
    stack_polls: Counter,
    /// Slowpath commands executed.
    commands: Counter,
    /// UE stacks created.
    ues: Counter,
    /// UE stacks freed (no connection, no SA set).
    ues_freed: Counter,
    /// ICMP/ICMPv6 echo replies sent.
    echo_replies: Counter,
    /// ARP replies sent.
    arp_replies: Counter,
    /// IPv6 Neighbor Advertisements sent.
    nd_replies: Counter,
    /// ARP requests / Neighbor Solicitations sent for unresolved next hops.
    solicitations: Counter,
    /// Datagrams reassembled from fragments.
    reasm_completed: Counter,
    /// Removed SA sets dropped once everything queued before the removal left.
    sa_sets_drained: Counter,
    /// Removed SA sets dropped at SA_DRAIN_LIMIT with bytes still unacknowledged.
    sa_drain_timeouts: Counter,
    /// TCP connections discarded without a segment when their SA set was dropped.
    sa_conns_discarded: Counter,
    /// TCP connections dropped without a segment because the UE opened their four-tuple
    /// again with a SYN through an SA (it rebooted or re-registered with the same ports).
    conns_replaced: Counter,
    /// Frames handed to the worker that owns their UE (port steering disagreed).
    handoff_out: Counter,
    /// Frames received from another worker for a UE this worker owns.
    handoff_in: Counter,
    /// Neighbours learned from ARP/ND here and told to the worker that owns them (a UE), or
    /// to every other worker (a gateway).
    neighbors_shared: Counter,
    /// Neighbours learned from another worker.
    neighbors_from_peers: Counter,
    /// Outbound packets queued while their next hop was resolved.
    neighbor_queued: Counter,
    /// Queued outbound packets sent once their next hop resolved.
    neighbor_released: Counter,
    /// Unicast ARP requests / NS sent to a gateway whose entry was about to expire (RFC 4861
    /// 7.3.3 PROBE).
    gateway_probes: Counter,
    /// Gateway probes that got no answer within `solicit_retry`.
    gateway_probe_failures: Counter,
    /// Times a resolved gateway became unresolved (its entry ran out, probes unanswered).
    gateway_unreachable: Counter,
    /// Gateways (defaults and routers of static routes) not resolved now.
    gateways_unresolved: Gauge,
    /// Malformed Ethernet/ARP/ND/IP frame.
    drop_l2_malformed: Counter,
    /// Frame or packet not addressed to us.
    drop_l2_not_for_us: Counter,
    /// Unsupported ethertype.
    drop_l2_ethertype: Counter,
    /// Malformed fragment.
    drop_reasm_malformed: Counter,
    /// Overlapping fragment (RFC 5722).
    drop_reasm_overlap: Counter,
    /// Duplicate fragment.
    drop_reasm_duplicate: Counter,
    /// Fragment beyond the datagram end or maximum size.
    drop_reasm_too_big: Counter,
    /// Fragment larger than the reassembly memory.
    drop_reasm_no_memory: Counter,
    /// Incomplete datagrams timed out (count of datagrams).
    drop_reasm_timeout: Counter,
    /// Incomplete datagrams evicted for memory (count of datagrams).
    drop_reasm_evicted: Counter,
    /// IP packet whose headers cannot be parsed.
    drop_ip_malformed: Counter,
    /// IP protocol other than ESP, TCP, UDP or ICMP echo.
    drop_ip_protocol: Counter,
    /// ESP packet with an SPI not in the SA table.
    drop_esp_unknown_spi: Counter,
    /// ESP packet whose addresses are not the SA's UE and P-CSCF.
    drop_esp_address: Counter,
    /// ESP packet for an SA owned by another worker.
    drop_esp_stray: Counter,
    /// ESP decapsulation failed (ICV, replay, padding, truncation).
    drop_esp_invalid: Counter,
    /// Decrypted packet whose ports are not the SA's (TS 33.203 7.1).
    drop_esp_selector: Counter,
    /// Unprotected packet to a protected port (port_ps / port_pc).
    drop_clear_to_protected: Counter,
    /// Unprotected packet to a port that is neither SIP nor protected.
    drop_closed_port: Counter,
    /// Protected traffic or command for a UE without a stack.
    drop_no_ue: Counter,
    /// New UE refused: the worker holds its maximum of UE stacks.
    drop_ue_limit: Counter,
    /// Packet to another of our addresses than the UE's stack uses.
    drop_local_address: Counter,
    /// Per-UE stack input queue full.
    drop_stack_queue_full: Counter,
    /// TCP connection closed because SIP framing failed.
    drop_framing: Counter,
    /// TLS connection aborted: failed handshake, bad record or alert.
    drop_tls: Counter,
    /// Event to the slowpath lost: queue full or closed.
    drop_event_queue_full: Counter,
    /// Send command that could not be queued (no connection, limits).
    drop_send_failed: Counter,
    /// Of those, UDP messages too large for an IP packet once ESP is added (65535 bytes).
    drop_udp_too_large: Counter,
    /// Outbound packet from a protected port with no outbound SA.
    drop_egress_no_sa: Counter,
    /// Outbound packet that is neither TCP nor UDP (e.g. ICMP errors).
    drop_egress_not_sip: Counter,
    /// ESP encapsulation failed.
    drop_egress_esp: Counter,
    /// Queued outbound packet whose next hop did not answer three solicitations.
    drop_egress_no_neighbor: Counter,
    /// Outbound packet dropped waiting for its next hop: the oldest of a neighbour's three
    /// queued packets, or any when the worker's queue is full.
    drop_neighbor_queue_full: Counter,
    /// Outbound packet with no route: no on-link prefix, static route or default gateway
    /// matches its destination (`[routes]`).
    drop_egress_no_route: Counter,
    /// Outbound packet larger than the link MTU that may not be fragmented (Don't Fragment,
    /// RFC 791 3.2) or larger than its buffer.
    drop_egress_too_big: Counter,
    /// Outbound packet larger than the big buffer packets above the link MTU are built in
    /// (larger than any IP packet: never built by the stack).
    drop_big_buffer: Counter,
    /// Packet buffer pool empty.
    drop_no_buffer: Counter,
    /// Transmit ring full.
    drop_tx_full: Counter,
    /// SA set that could not be installed (bad keys, SPI taken, foreign address).
    drop_sa_install: Counter,
    /// Stray frame lost: the owning worker's handoff ring was full.
    drop_handoff_full: Counter,
    /// Neighbour not told to a worker whose ring was full (it solicits).
    drop_neighbor_share_full: Counter,
    /// SYN refused: the UE's stack holds its maximum of TCP connections (`max_tcp_conns`;
    /// smoltcp answers with RST).
    drop_conn_limit: Counter,
    /// UDP datagram refused: its port's receive queue in the UE's stack was full until the
    /// next poll.
    drop_udp_queue_full: Counter,
    /// TCP segment or UDP datagram dropped by the UE's stack: wrong checksum (RFC 9293 3.1,
    /// RFC 768).
    drop_checksum: Counter,
    /// SYN to the unprotected SIP port dropped: its source address holds
    /// `max-connections-per-source` connections there.
    drop_sip_conn_per_source: Counter,
    /// SYN to the unprotected SIP port dropped: the worker holds `max-connections` there.
    drop_sip_conn_limit: Counter,
    /// SYN to the unprotected SIP port dropped: `max-half-open` handshakes are in progress.
    drop_sip_half_open: Counter,
    /// Packet to the unprotected SIP port from a new source dropped: the worker holds
    /// `max-unregistered` stacks of sources without an SA set.
    drop_sip_unregistered_limit: Counter,
    /// Connections to the SIP port reset: handshake not completed within `message-deadline`.
    sip_conns_handshake_timeout: Counter,
    /// Connections to the SIP port reset: a SIP message begun and not completed within
    /// `message-deadline`.
    sip_conns_message_timeout: Counter,
    /// Connections to the SIP port of unregistered sources reset: no message within
    /// `idle-deadline`.
    sip_conns_idle_timeout: Counter,
}
