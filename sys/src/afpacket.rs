//! AF_PACKET backend: per queue one packet socket with a TPACKET_V3 memory-mapped RX ring and
//! a mapped TX ring (or `sendmmsg`), joined into a `PACKET_FANOUT_CBPF` group whose classic-BPF
//! program spreads frames by the UE's IP address (see [`crate::steer`]).
//!
//! Design notes:
//! - Each received frame is copied once from the ring into a [`PacketBuf`] with headroom, so
//!   ring blocks go back to the kernel at once and ESP can grow packets in place.
//! - A socket with a TX ring sends *only* from the ring (`sendmsg` flushes it and ignores its
//!   iovec), so [`TxMode::Sendmmsg`] sockets are opened without one.
//! - Sockets drop everything (`SO_ATTACH_FILTER` "ret 0") until the whole fanout group is
//!   assembled, so no frame lands on a queue the fanout program would not choose.
//! - The fanout program reads addresses relative to the network header (`SKF_NET_OFF`) and
//!   the EtherType from `skb->protocol`, which is right whether or not the MAC header has
//!   been pulled; the kernel takes its result modulo the group size, and so does the program.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::buf::{BufLayout, BufPool, PacketBuf};
use crate::error::IoError;
use crate::port::{LinkInfo, Port, PortQueue, QueueCounters, RxTally, TxTally};
use crate::steer::{cbpf, Steering, UeSide};

/// How a queue transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxMode {
    /// Copy frames into a `PACKET_TX_RING` and kick the kernel with one `send` per burst.
    #[default]
    Ring,
    /// One `sendmmsg` per burst straight from the packet buffers.
    Sendmmsg,
}

/// Configuration of an AF_PACKET port.
#[derive(Debug, Clone)]
pub struct AfPacketConfig {
    /// Interface name (in the calling thread's network namespace).
    pub ifname: String,
    /// Number of queues (fanout members).
    pub queues: usize,
    /// Which address of a received frame is the UE's.
    pub ue_side: UeSide,
    /// Put the interface into promiscuous mode.
    pub promiscuous: bool,
    /// Transmit method.
    pub tx_mode: TxMode,
    /// Bypass the qdisc layer on transmit (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// Buffer geometry (max frame size decides the TX ring frame size).
    pub layout: BufLayout,
    /// Buffers per queue pool.
    pub pool_size: usize,
    /// RX ring block size in bytes (power of two, multiple of the page size).
    pub rx_block_size: u32,
    /// RX ring block count.
    pub rx_block_nr: u32,
    /// Milliseconds after which the kernel hands over a partly filled RX block.
    pub rx_block_timeout_ms: u32,
    /// TX ring frame slots.
    pub tx_frame_nr: u32,
}

impl AfPacketConfig {
    /// Defaults for `ifname`: one queue, source-side UE, TX ring, standard frames.
    pub fn new(ifname: &str) -> Self {
        AfPacketConfig {
            ifname: ifname.to_owned(),
            queues: 1,
            ue_side: UeSide::Source,
            promiscuous: false,
            tx_mode: TxMode::Ring,
            qdisc_bypass: false,
            layout: BufLayout::STANDARD,
            pool_size: 4096,
            rx_block_size: 1 << 18,
            rx_block_nr: 16,
            rx_block_timeout_ms: 1,
            tx_frame_nr: 1024,
        }
    }
}

/// An AF_PACKET port.
pub struct AfPacketPort {
    link: LinkInfo,
    queues: Vec<AfPacketQueue>,
    counters: Vec<Arc<QueueCounters>>,
}

/// The mapped rings of one socket.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One queue: a packet socket, its rings and its buffer pool.
pub struct AfPacketQueue {
    id: usize,
    // Field order: the mapping is unmapped before the socket is closed.
    map: Mapping,
    fd: OwnedFd,
    rx_block_size: usize,
    rx_block_nr: usize,
    rx_block: usize,
    rx_pkt_left: u32,
    rx_pkt_off: usize,
    tx_base: usize,
    tx_frame_size: usize,
    tx_frames_per_block: usize,
    tx_block_size: usize,
    tx_frame_nr: usize,
    tx_next: usize,
    tx_mode: TxMode,
    pool: BufPool,
    bursts: u32,
    counters: Arc<QueueCounters>,
}

// SAFETY: the raw mapping pointer is owned by the queue; nothing else aliases the rings.
unsafe impl Send for AfPacketQueue {}

const TP3_HDR: usize = 48; // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
const TP_STATUS_OFF: usize = 20; // offsetof(struct tpacket3_hdr, tp_status)
const BLK_STATUS_OFF: usize = 8; // offsetof(tpacket_block_desc, hdr.bh1.block_status)

fn setsockopt<T>(fd: i32, level: i32, name: i32, val: &T) -> i32 {
    // SAFETY: val points to a live T of the given size for the duration of the call.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

fn ifreq_for(ifname: &str) -> Result<libc::ifreq, IoError> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(IoError::NoSuchInterface(ifname.to_owned()));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    Ok(ifr)
}

fn link_info(fd: i32, ifname: &str) -> Result<LinkInfo, IoError> {
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr) } < 0 {
        return Err(IoError::last_os("ioctl(SIOCGIFHWADDR)", ifname));
    }
    let mut mac = [0u8; 6];
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: SIOCGIFMTU fills ifru_mtu of a valid ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr) } < 0 {
        return Err(IoError::last_os("ioctl(SIOCGIFMTU)", ifname));
    }
    // SAFETY: after SIOCGIFMTU the union holds ifru_mtu.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(LinkInfo {
        name: ifname.to_owned(),
        mac,
        mtu: mtu.max(0) as usize,
    })
}

fn attach_filter(fd: i32, prog: &[libc::sock_filter], name: i32) -> i32 {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let level = if name == libc::SO_ATTACH_FILTER {
        libc::SOL_SOCKET
    } else {
        libc::SOL_PACKET
    };
    setsockopt(fd, level, name, &fprog)
}

impl AfPacketPort {
    /// Open `cfg.queues` sockets on `cfg.ifname` in the calling thread's network namespace.
    pub fn open(cfg: &AfPacketConfig) -> Result<Self, IoError> {
        let ifn = cfg.ifname.as_str();
        if cfg.queues == 0 || cfg.queues > 1024 {
            return Err(IoError::Config("queues must be 1..=1024".into()));
        }
        let page = 4096u32;
        if !cfg.rx_block_size.is_power_of_two() || cfg.rx_block_size < page || cfg.rx_block_nr == 0
        {
            return Err(IoError::Config(
                "rx_block_size must be a power of two >= 4096, rx_block_nr >= 1".into(),
            ));
        }
        let cname = CString::new(ifn).map_err(|_| IoError::NoSuchInterface(ifn.into()))?;
        // SAFETY: cname is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(IoError::NoSuchInterface(ifn.into()));
        }
        let mut queues = Vec::with_capacity(cfg.queues);
        let mut fanout_id = 0u32;
        for id in 0..cfg.queues {
            let q = AfPacketQueue::open(cfg, id, ifindex as i32)?;
            let fd = q.fd.as_raw_fd();
            if id == 0 && cfg.promiscuous {
                let mr = libc::packet_mreq {
                    mr_ifindex: ifindex as i32,
                    mr_type: libc::PACKET_MR_PROMISC as u16,
                    mr_alen: 0,
                    mr_address: [0; 8],
                };
                if setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr) < 0 {
                    return Err(IoError::last_os("setsockopt(PACKET_ADD_MEMBERSHIP)", ifn));
                }
            }
            if cfg.queues > 1 {
                let ty = libc::PACKET_FANOUT_CBPF;
                let arg: u32 = if id == 0 {
                    (ty | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16
                } else {
                    (ty << 16) | fanout_id
                };
                if setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg) < 0 {
                    return Err(IoError::last_os("setsockopt(PACKET_FANOUT)", ifn));
                }
                if id == 0 {
                    let mut v: u32 = 0;
                    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
                    // SAFETY: v/len are valid out-parameters of the right size.
                    let r = unsafe {
                        libc::getsockopt(
                            fd,
                            libc::SOL_PACKET,
                            libc::PACKET_FANOUT,
                            (&mut v as *mut u32).cast(),
                            &mut len,
                        )
                    };
                    if r < 0 {
                        return Err(IoError::last_os("getsockopt(PACKET_FANOUT)", ifn));
                    }
                    fanout_id = v & 0xffff;
                    let prog = cbpf::fanout_program(cfg.ue_side, cfg.queues);
                    if attach_filter(fd, &prog, libc::PACKET_FANOUT_DATA) < 0 {
                        return Err(IoError::last_os("setsockopt(PACKET_FANOUT_DATA)", ifn));
                    }
                }
            }
            queues.push(q);
        }
        // Frames that reached a socket before the group was complete were dropped by the
        // drop-all filter; from here on every queue accepts what the fanout gives it.
        for q in &queues {
            let one = 1i32;
            if setsockopt(
                q.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                &one,
            ) < 0
            {
                return Err(IoError::last_os("setsockopt(SO_DETACH_FILTER)", ifn));
            }
        }
        let link = link_info(queues[0].fd.as_raw_fd(), ifn)?;
        if cfg.layout.max_frame < link.mtu + 14 {
            tracing::warn!(
                "{ifn}: MTU {} needs frames of {} bytes, buffers hold {}",
                link.mtu,
                link.mtu + 14,
                cfg.layout.max_frame
            );
        }
        Ok(AfPacketPort {
            link,
            counters: queues.iter().map(|q| q.counters.clone()).collect(),
            queues,
        })
    }
}

impl AfPacketQueue {
    fn open(cfg: &AfPacketConfig, id: usize, ifindex: i32) -> Result<Self, IoError> {
        let ifn = cfg.ifname.as_str();
        // Protocol 0: receive nothing until bound, so the ring starts empty.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(IoError::last_os("socket(AF_PACKET)", ifn));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let v3 = libc::tpacket_versions::TPACKET_V3 as i32;
        if setsockopt(s, libc::SOL_PACKET, libc::PACKET_VERSION, &v3) < 0 {
            return Err(IoError::last_os("setsockopt(PACKET_VERSION)", ifn));
        }
        let one = 1i32;
        // Frames this host sends on the interface are not input (Linux >= 4.20; best effort).
        let _ = setsockopt(s, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one);
        if cfg.qdisc_bypass && setsockopt(s, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one) < 0
        {
            return Err(IoError::last_os("setsockopt(PACKET_QDISC_BYPASS)", ifn));
        }
        let rx = libc::tpacket_req3 {
            tp_block_size: cfg.rx_block_size,
            tp_block_nr: cfg.rx_block_nr,
            tp_frame_size: 2048,
            tp_frame_nr: cfg.rx_block_size / 2048 * cfg.rx_block_nr,
            tp_retire_blk_tov: cfg.rx_block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        if setsockopt(s, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx) < 0 {
            return Err(IoError::last_os("setsockopt(PACKET_RX_RING)", ifn));
        }
        let tx_frame_size = (TP3_HDR + cfg.layout.max_frame)
            .next_power_of_two()
            .max(2048);
        let tx_block_size = tx_frame_size.max(1 << 16);
        let per_block = tx_block_size / tx_frame_size;
        // With a TX ring mapped, every sendmsg on the socket flushes the ring and ignores
        // its iovec, so sendmmsg mode must not have one.
        let tx_block_nr = match cfg.tx_mode {
            TxMode::Ring => (cfg.tx_frame_nr as usize).div_ceil(per_block).max(1),
            TxMode::Sendmmsg => 0,
        };
        let tx_frame_nr = tx_block_nr * per_block;
        let tx = libc::tpacket_req3 {
            tp_block_size: tx_block_size as u32,
            tp_block_nr: tx_block_nr as u32,
            tp_frame_size: tx_frame_size as u32,
            tp_frame_nr: tx_frame_nr as u32,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        if tx_block_nr > 0 && setsockopt(s, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx) < 0 {
            return Err(IoError::last_os("setsockopt(PACKET_TX_RING)", ifn));
        }
        let rx_len = cfg.rx_block_size as usize * cfg.rx_block_nr as usize;
        let len = rx_len + tx_block_size * tx_block_nr;
        // SAFETY: mapping the rings just configured on s; RX ring first, TX ring after it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                s,
                0,
            )
        };
        let ptr = if ptr == libc::MAP_FAILED {
            // MAP_LOCKED fails under a low RLIMIT_MEMLOCK; retry unlocked.
            // SAFETY: as above.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    s,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(IoError::last_os("mmap(packet rings)", ifn));
            }
            p
        } else {
            ptr
        };
        let map = Mapping {
            ptr: ptr.cast(),
            len,
        };
        // Drop everything until the fanout group is assembled (see AfPacketPort::open).
        if attach_filter(s, &cbpf::drop_all(), libc::SO_ATTACH_FILTER) < 0 {
            return Err(IoError::last_os("setsockopt(SO_ATTACH_FILTER)", ifn));
        }
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the given length.
        let r = unsafe {
            libc::bind(
                s,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(IoError::last_os("bind(AF_PACKET)", ifn));
        }
        Ok(AfPacketQueue {
            id,
            map,
            fd,
            rx_block_size: cfg.rx_block_size as usize,
            rx_block_nr: cfg.rx_block_nr as usize,
            rx_block: 0,
            rx_pkt_left: 0,
            rx_pkt_off: 0,
            tx_base: rx_len,
            tx_frame_size,
            tx_frames_per_block: per_block,
            tx_block_size,
            tx_frame_nr,
            tx_next: 0,
            tx_mode: cfg.tx_mode,
            pool: BufPool::new(cfg.layout, cfg.pool_size),
            bursts: 0,
            counters: Arc::default(),
        })
    }

    /// The 32-bit status word at byte `off` of the mapping.
    fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.map.len && off.is_multiple_of(4));
        // SAFETY: off is inside the mapping and 4-aligned (block and frame starts are
        // page/16-aligned, status fields at fixed 4-aligned offsets); the kernel and we
        // access the word atomically.
        unsafe { &*(self.map.ptr.add(off) as *const AtomicU32) }
    }

    /// The bytes of RX block `b` (only read while the block belongs to user space). The
    /// slice is not tied to `&self` so the queue's pool and cursor can change meanwhile; it
    /// must not outlive the current `rx_burst` call.
    fn rx_block_bytes<'a>(&self, b: usize) -> &'a [u8] {
        // SAFETY: block b lies inside the RX part of the mapping, which lives as long as the
        // queue; the caller saw TP_STATUS_USER with acquire ordering, so the kernel does not
        // write the block until release_block hands it back, after the last use of the slice.
        unsafe {
            std::slice::from_raw_parts(self.map.ptr.add(b * self.rx_block_size), self.rx_block_size)
        }
    }

    /// Add the kernel's drop counter (`PACKET_STATISTICS` resets on read).
    pub fn sync_kernel_stats(&mut self) {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st/len are valid out-parameters of the right size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            QueueCounters::add(&self.counters.rx_dropped, st.tp_drops as u64);
        }
    }

    /// Block until the RX ring has a block ready or `timeout_ms` passes (for idle workers).
    pub fn wait_rx(&self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    fn tx_ring(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        let (mut n, mut bytes, mut errors, mut full) = (0usize, 0u64, 0u64, false);
        for p in pkts.iter() {
            let slot = self.tx_next;
            let off = self.tx_base
                + (slot / self.tx_frames_per_block) * self.tx_block_size
                + (slot % self.tx_frames_per_block) * self.tx_frame_size;
            let st = self.status(off + TP_STATUS_OFF).load(Ordering::Acquire);
            if st == libc::TP_STATUS_WRONG_FORMAT {
                errors += 1;
            } else if st != libc::TP_STATUS_AVAILABLE {
                full = true;
                break;
            }
            let data = p.data();
            if data.len() > self.tx_frame_size - TP3_HDR || data.is_empty() {
                errors += 1;
                n += 1;
                continue;
            }
            // SAFETY: the slot [off, off + tx_frame_size) is inside the TX part of the
            // mapping and belongs to user space (status AVAILABLE / WRONG_FORMAT).
            unsafe {
                let f = self.map.ptr.add(off);
                std::ptr::copy_nonoverlapping(data.as_ptr(), f.add(TP3_HDR), data.len());
                let h = f as *mut libc::tpacket3_hdr;
                (*h).tp_next_offset = 0;
                (*h).tp_len = data.len() as u32;
                (*h).tp_snaplen = data.len() as u32;
            }
            self.status(off + TP_STATUS_OFF)
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_next = (slot + 1) % self.tx_frame_nr.max(1);
            bytes += data.len() as u64;
            n += 1;
        }
        if n > 0 {
            // SAFETY: zero-length send on our socket flushes the TX ring.
            let r =
                unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = std::io::Error::last_os_error().raw_os_error();
                if e != Some(libc::EAGAIN) && e != Some(libc::ENOBUFS) {
                    tracing::debug!("tx ring kick failed: {e:?}");
                }
            }
        }
        for p in pkts.drain(..n) {
            self.pool.put(p);
        }
        self.counters.count_tx(TxTally {
            packets: n as u64 - errors,
            bytes,
            errors,
            ring_full: full,
        });
        n
    }

    fn tx_sendmmsg(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        const MAX: usize = 64;
        let count = pkts.len().min(MAX);
        if count == 0 {
            return 0;
        }
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid.
        let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for i in 0..count {
            let d = pkts[i].data();
            iov[i].iov_base = d.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = d.len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs[..count] point at iovecs that point into live packet buffers.
        let r = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as u32,
                libc::MSG_DONTWAIT,
            )
        };
        let c = &self.counters;
        let sent = if r < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EAGAIN) || e == Some(libc::ENOBUFS) {
                QueueCounters::add(&c.tx_ring_full, 1);
                return 0;
            }
            // The first frame is refused (e.g. too long): drop it so the queue moves on.
            QueueCounters::add(&c.tx_errors, 1);
            if let Some(p) = (!pkts.is_empty()).then(|| pkts.remove(0)) {
                self.pool.put(p);
            }
            return 1;
        } else {
            r as usize
        };
        let bytes: u64 = pkts[..sent].iter().map(|p| p.len() as u64).sum();
        c.count_tx(TxTally {
            packets: sent as u64,
            bytes,
            errors: 0,
            ring_full: sent < count,
        });
        for p in pkts.drain(..sent) {
            self.pool.put(p);
        }
        sent
    }
}

impl PortQueue for AfPacketQueue {
    fn queue_id(&self) -> usize {
        self.id
    }

    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.bursts = self.bursts.wrapping_add(1);
        if self.bursts.is_multiple_of(4096) {
            self.sync_kernel_stats();
        }
        let (mut n, mut bytes, mut trunc, mut nobuf) = (0usize, 0u64, 0u64, false);
        while n < max {
            let boff = self.rx_block * self.rx_block_size;
            if self.rx_pkt_left == 0 {
                let st = self.status(boff + BLK_STATUS_OFF).load(Ordering::Acquire);
                if st & libc::TP_STATUS_USER == 0 {
                    break;
                }
                let blk = self.rx_block_bytes(self.rx_block);
                let rd = |o: usize| {
                    blk.get(o..o + 4)
                        .map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
                };
                // tpacket_hdr_v1: block_status@8, num_pkts@12, offset_to_first_pkt@16.
                self.rx_pkt_left = rd(12);
                self.rx_pkt_off = rd(16) as usize;
                if self.rx_pkt_left == 0 {
                    self.release_block();
                    continue;
                }
            }
            let Some(mut buf) = self.pool.get() else {
                nobuf = true;
                break;
            };
            let blk = self.rx_block_bytes(self.rx_block);
            let o = self.rx_pkt_off;
            let rd = |o: usize| {
                blk.get(o..o + 4)
                    .map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
            };
            let rd16 = |o: usize| {
                blk.get(o..o + 2)
                    .map_or(0, |w| u16::from_ne_bytes([w[0], w[1]]))
            };
            // tpacket3_hdr: next_offset@0, snaplen@12, len@16, mac@24.
            let next = rd(o) as usize;
            let snap = rd(o + 12) as usize;
            let len = rd(o + 16) as usize;
            let mac = rd16(o + 24) as usize;
            let frame = blk.get(o + mac..o + mac + snap);
            match frame {
                Some(f) if snap == len && buf.fill(f).is_ok() => {
                    bytes += f.len() as u64;
                    out.push(buf);
                    n += 1;
                }
                _ => {
                    trunc += 1;
                    self.pool.put(buf);
                }
            }
            self.rx_pkt_left -= 1;
            if self.rx_pkt_left == 0 || next == 0 {
                self.rx_pkt_left = 0;
                self.release_block();
            } else {
                self.rx_pkt_off = o + next;
            }
        }
        self.counters.count_rx(RxTally {
            packets: n as u64,
            bytes,
            truncated: trunc,
            nobuf,
        });
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        match self.tx_mode {
            TxMode::Ring => self.tx_ring(pkts),
            TxMode::Sendmmsg => self.tx_sendmmsg(pkts),
        }
    }

    fn alloc(&mut self) -> Option<PacketBuf> {
        self.pool.get()
    }

    fn free(&mut self, buf: PacketBuf) {
        self.pool.put(buf);
    }

    fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }
}

impl AfPacketQueue {
    fn release_block(&mut self) {
        let boff = self.rx_block * self.rx_block_size;
        self.status(boff + BLK_STATUS_OFF)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx_block = (self.rx_block + 1) % self.rx_block_nr;
    }
}

impl Port for AfPacketPort {
    type Queue = AfPacketQueue;
    fn link(&self) -> &LinkInfo {
        &self.link
    }
    fn num_queues(&self) -> usize {
        self.counters.len()
    }
    fn take_queues(&mut self) -> Vec<AfPacketQueue> {
        std::mem::take(&mut self.queues)
    }
    fn counters(&self) -> Vec<Arc<QueueCounters>> {
        self.counters.clone()
    }
    fn steering(&self) -> Steering {
        // The fanout program computes `queue_for_key` of the UE key (steer::cbpf).
        Steering::UeKey {
            queues: self.counters.len(),
        }
    }
}
