//! DPDK ethdev backend (cargo feature `dpdk`): the EAL is started once per process with the
//! configured arguments verbatim (`--vdev`, `--no-huge`, `-a <pci>` ...), a port gets one RX
//! and one TX queue per worker with RSS over IP addresses only (the source address alone when
//! the driver offers `RTE_ETH_RSS_L3_SRC_ONLY`), and mbufs come from a mempool (on hugepages
//! when the EAL has them). Frames are copied between mbufs and [`PacketBuf`]s. The port reads
//! back the NIC's RSS key and redirection table so [`Port::steering`] predicts the queue of a
//! UE in software (`steer::RssSteering`).

pub mod bindings;

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::{Arc, Mutex};

use crate::buf::{BufLayout, BufPool, PacketBuf};
use crate::error::IoError;
use crate::port::{LinkInfo, Port, PortQueue, QueueCounters, RxTally, TxTally};
use crate::steer::{RssInput, RssSteering, Steering};
use bindings as b;

static EAL: Mutex<Option<Vec<String>>> = Mutex::new(None);

fn rte_err(what: &str, code: i32) -> IoError {
    let code = if code < 0 { -code } else { code };
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let msg = unsafe { CStr::from_ptr(b::rte_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    IoError::Dpdk(format!("{what}: {msg} ({code})"))
}

/// Start DPDK's EAL with `args` (the first is the program name, as in `argv[0]`). The EAL can
/// be started once per process; a second call with the same arguments is a no-op, with
/// different arguments an error.
pub fn eal_init(args: &[String]) -> Result<(), IoError> {
    let mut g = EAL
        .lock()
        .map_err(|_| IoError::Dpdk("EAL lock poisoned".into()))?;
    if let Some(prev) = g.as_ref() {
        return if prev == args {
            Ok(())
        } else {
            Err(IoError::Dpdk(format!(
                "EAL already initialised with {prev:?}; it can start once per process"
            )))
        };
    }
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| IoError::Config("EAL argument contains NUL".into()))?;
    // DPDK may permute argv, so it gets its own array; the strings outlive the process's use.
    let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
    // SAFETY: argv holds argc valid NUL-terminated strings that live until the end of this
    // function; rte_eal_init copies what it keeps (it strdup's the arguments it stores).
    let r = unsafe { b::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    if r < 0 {
        // SAFETY: plain getter of rte_errno.
        return Err(rte_err("rte_eal_init", unsafe { b::akg_errno() }));
    }
    *g = Some(args.to_vec());
    Ok(())
}

/// The vdev name of [`open_af_packet_vdev`]'s port.
pub const AF_PACKET_VDEV: &str = "net_af_packet0";

/// Starts the EAL without huge pages, PCI scan or shared config (`memory_mb` MiB of memory,
/// lcore 0, `program` as `argv[0]`) with DPDK's `net_af_packet` PMD on kernel interface
/// `iface`, and opens that port: DPDK on a veth end, for tests and benches. The PMD opens its
/// socket in the calling thread's network namespace.
pub fn open_af_packet_vdev(
    program: &str,
    iface: &str,
    memory_mb: u32,
) -> Result<DpdkPort, IoError> {
    let args: Vec<String> = [
        program,
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        &memory_mb.to_string(),
        "-l",
        "0",
        "--log-level=error",
        &format!("--vdev={AF_PACKET_VDEV},iface={iface}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    eal_init(&args)?;
    DpdkPort::open(&DpdkConfig::new(AF_PACKET_VDEV))
}

/// Make the calling (non-EAL) thread an EAL thread so mempool caches work on it.
pub fn register_thread() {
    // SAFETY: rte_lcore_id reads a thread-local; rte_thread_register may be called by any
    // thread after EAL init.
    unsafe {
        if b::akg_lcore_id() == u32::MAX {
            let _ = b::rte_thread_register();
        }
    }
}

/// Configuration of a DPDK port.
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// Device name as the EAL knows it: `net_af_packet0`, a PCI address `0000:03:00.0`, ...
    pub device: String,
    /// Number of RX/TX queue pairs (workers).
    pub queues: usize,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Mbufs in the port's mempool.
    pub mbufs: u32,
    /// Our packet buffer geometry.
    pub layout: BufLayout,
    /// Packet buffers per queue pool.
    pub pool_size: usize,
    /// Enable promiscuous mode.
    pub promiscuous: bool,
    /// Our IPv4 address UEs talk to: hashed with the UE's address when the NIC cannot hash
    /// the source address alone (see [`RssInput::L3SrcDst`]).
    pub rss_local_v4: Option<std::net::Ipv4Addr>,
    /// Our IPv6 address UEs talk to, likewise.
    pub rss_local_v6: Option<std::net::Ipv6Addr>,
}

impl DpdkConfig {
    /// Defaults for `device`: one queue, 1024 descriptors, 8191 mbufs.
    pub fn new(device: &str) -> Self {
        DpdkConfig {
            device: device.to_owned(),
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mbufs: 8191,
            layout: BufLayout::STANDARD,
            pool_size: 4096,
            promiscuous: true,
            rss_local_v4: None,
            rss_local_v6: None,
        }
    }
}

/// A started ethdev port and its mempool; stopped, closed and freed when the last queue and
/// the port handle are gone.
struct Device {
    port_id: u16,
    mp: *mut b::rte_mempool,
}

// SAFETY: the ethdev API is thread-safe for distinct queues; the mempool is MT-safe.
unsafe impl Send for Device {}
// SAFETY: as above; Device is only read after start.
unsafe impl Sync for Device {}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the port was started by DpdkPort::open and no queue uses it any more (this
        // is the last reference); the mempool is freed after the port that used it is closed.
        unsafe {
            b::rte_eth_dev_stop(self.port_id);
            b::rte_eth_dev_close(self.port_id);
            b::rte_mempool_free(self.mp);
        }
    }
}

/// A DPDK ethdev port.
pub struct DpdkPort {
    link: LinkInfo,
    steering: Steering,
    queues: Vec<DpdkQueue>,
    counters: Vec<Arc<QueueCounters>>,
    dev: Arc<Device>,
}

/// One RX/TX queue pair of a [`DpdkPort`].
pub struct DpdkQueue {
    id: u16,
    dev: Arc<Device>,
    mbufs: Vec<*mut b::rte_mbuf>,
    pool: BufPool,
    registered: bool,
    counters: Arc<QueueCounters>,
}

// SAFETY: the mbuf pointer scratch array is only used inside one call; mbufs are owned
// exclusively by the queue between alloc and burst.
unsafe impl Send for DpdkQueue {}

const BURST: usize = 64;
/// Data bytes of a default mbuf (`RTE_MBUF_DEFAULT_DATAROOM`).
const MBUF_DATA_ROOM: usize = 2048;

/// `RTE_ETH_RSS_L3_SRC_ONLY` (rte_ethdev.h: `RTE_BIT64(63)`): hash the source address only.
const RSS_L3_SRC_ONLY: u64 = 1 << 63;

/// Symmetric Toeplitz key (0x6d5a repeated): both directions of a flow hash alike.
const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
];

impl DpdkPort {
    /// Configure and start `cfg.device`. Call [`eal_init`] first.
    pub fn open(cfg: &DpdkConfig) -> Result<Self, IoError> {
        if EAL.lock().map(|g| g.is_none()).unwrap_or(true) {
            return Err(IoError::Dpdk("call dpdk::eal_init first".into()));
        }
        if cfg.queues == 0 || cfg.queues > u16::MAX as usize {
            return Err(IoError::Config("queues must be at least 1".into()));
        }
        let nq = cfg.queues as u16;
        let name = CString::new(cfg.device.as_str())
            .map_err(|_| IoError::Config("device name contains NUL".into()))?;
        let mut port_id = 0u16;
        // SAFETY: name is NUL-terminated, port_id a valid out-parameter.
        let r = unsafe { b::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut port_id) };
        if r != 0 {
            return Err(IoError::Dpdk(format!(
                "no DPDK port named {:?} (is it in the EAL arguments, e.g. --vdev or -a?)",
                cfg.device
            )));
        }
        // SAFETY: rte_eth_dev_info is plain old data, filled by rte_eth_dev_info_get.
        let mut info: b::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out-parameter.
        let r = unsafe { b::rte_eth_dev_info_get(port_id, &mut info) };
        if r != 0 {
            return Err(rte_err("rte_eth_dev_info_get", r));
        }
        if info.max_rx_queues < nq || info.max_tx_queues < nq {
            return Err(IoError::Config(format!(
                "{} supports {} rx / {} tx queues, {} requested",
                cfg.device, info.max_rx_queues, info.max_tx_queues, nq
            )));
        }
        // SAFETY: rte_eth_conf is plain old data; all-zero is the documented default.
        let mut conf: b::rte_eth_conf = unsafe { std::mem::zeroed() };
        let mut key = RSS_KEY;
        let mut rss = false;
        if nq > 1 {
            // RSS over IPv4/IPv6 addresses only: all packets of one UE, ESP included, land on
            // one queue (ports are not hashed, fragments stay together). With the source
            // address alone the queue depends on the UE only, whichever of our addresses it uses.
            // SAFETY: pure getter.
            let mut hf = unsafe { b::akg_rss_ip() } & info.flow_type_rss_offloads;
            if hf != 0 && info.flow_type_rss_offloads & RSS_L3_SRC_ONLY != 0 {
                hf |= RSS_L3_SRC_ONLY;
            }
            if hf == 0 {
                tracing::warn!(
                    "{}: no RSS on IP addresses; the driver spreads queues its own way and \
                     workers hand strays to the UE's owner",
                    cfg.device
                );
            } else {
                rss = true;
                conf.rxmode.mq_mode = b::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                if info.hash_key_size as usize == key.len() {
                    conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                    conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
                }
            }
        }
        // SAFETY: conf and the key it points to live across the call.
        let r = unsafe { b::rte_eth_dev_configure(port_id, nq, nq, &conf) };
        if r != 0 {
            return Err(rte_err("rte_eth_dev_configure", r));
        }
        let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port and out-parameters.
        let r = unsafe { b::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut nrx, &mut ntx) };
        if r != 0 {
            return Err(rte_err("rte_eth_dev_adjust_nb_rx_tx_desc", r));
        }
        // SAFETY: valid port id.
        let socket = unsafe { b::rte_eth_dev_socket_id(port_id) };
        let socket = if socket < 0 {
            // SAFETY: pure getter.
            unsafe { b::rte_socket_id() as i32 }
        } else {
            socket
        };
        let mp_name = CString::new(format!("akg_mp_{port_id}"))
            .map_err(|_| IoError::Config("mempool name".into()))?;
        // SAFETY: valid name; the sizes are within DPDK's limits (cache <= 512).
        let mp = unsafe {
            b::rte_pktmbuf_pool_create(
                mp_name.as_ptr(),
                cfg.mbufs,
                256,
                0,
                b::akg_mbuf_default_buf_size(),
                socket,
            )
        };
        if mp.is_null() {
            // SAFETY: pure getter.
            return Err(rte_err("rte_pktmbuf_pool_create", unsafe {
                b::akg_errno()
            }));
        }
        let dev = Arc::new(Device { port_id, mp });
        for q in 0..nq {
            // SAFETY: port configured with nq queues; mp is a valid mempool; NULL conf means
            // driver defaults.
            let r = unsafe {
                b::rte_eth_rx_queue_setup(port_id, q, nrx, socket as u32, std::ptr::null(), mp)
            };
            if r != 0 {
                return Err(rte_err("rte_eth_rx_queue_setup", r));
            }
            // SAFETY: as above.
            let r = unsafe {
                b::rte_eth_tx_queue_setup(port_id, q, ntx, socket as u32, std::ptr::null())
            };
            if r != 0 {
                return Err(rte_err("rte_eth_tx_queue_setup", r));
            }
        }
        // SAFETY: all queues are set up.
        let r = unsafe { b::rte_eth_dev_start(port_id) };
        if r != 0 {
            return Err(rte_err("rte_eth_dev_start", r));
        }
        if cfg.promiscuous {
            // SAFETY: started port.
            let _ = unsafe { b::rte_eth_promiscuous_enable(port_id) };
        }
        let steering = if rss {
            rss_steering(port_id, nq, cfg)
        } else {
            None
        }
        .unwrap_or(Steering::UeKey {
            queues: usize::from(nq),
        });
        tracing::debug!("{}: steering {steering:?}", cfg.device);
        let mut mac = b::rte_ether_addr::default();
        let mut mtu = 0u16;
        // SAFETY: valid port and out-parameters.
        unsafe {
            b::rte_eth_macaddr_get(port_id, &mut mac);
            b::rte_eth_dev_get_mtu(port_id, &mut mtu);
        }
        let queues: Vec<DpdkQueue> = (0..nq)
            .map(|id| DpdkQueue {
                id,
                dev: dev.clone(),
                mbufs: vec![std::ptr::null_mut(); BURST],
                pool: BufPool::new(cfg.layout, cfg.pool_size),
                registered: false,
                counters: Arc::default(),
            })
            .collect();
        Ok(DpdkPort {
            steering,
            link: LinkInfo {
                name: cfg.device.clone(),
                mac: mac.addr_bytes,
                mtu: mtu as usize,
            },
            counters: queues.iter().map(|q| q.counters.clone()).collect(),
            queues,
            dev,
        })
    }

    /// The ethdev port id.
    pub fn port_id(&self) -> u16 {
        self.dev.port_id
    }

    /// Device-level drop counters: (imissed, rx_nombuf), as the NIC/driver reports them.
    pub fn device_drops(&self) -> (u64, u64) {
        let mut st = b::rte_eth_stats::default();
        // SAFETY: valid port and out-parameter.
        unsafe { b::rte_eth_stats_get(self.dev.port_id, &mut st) };
        (st.imissed, st.rx_nombuf)
    }
}

impl Port for DpdkPort {
    type Queue = DpdkQueue;
    fn link(&self) -> &LinkInfo {
        &self.link
    }
    fn num_queues(&self) -> usize {
        self.counters.len()
    }
    fn take_queues(&mut self) -> Vec<DpdkQueue> {
        std::mem::take(&mut self.queues)
    }
    fn counters(&self) -> Vec<Arc<QueueCounters>> {
        self.counters.clone()
    }
    fn steering(&self) -> Steering {
        self.steering.clone()
    }
}

/// The NIC's RSS as configured on the started port: key, hashed fields and redirection table,
/// read back from the driver. `None` when the driver does not report them; the port then
/// steers its own way and [`Steering::UeKey`] only names an owner for the workers' handoff.
fn rss_steering(port_id: u16, nq: u16, cfg: &DpdkConfig) -> Option<Steering> {
    let mut key = [0u8; 64];
    // SAFETY: rte_eth_rss_conf is plain old data.
    let mut conf: b::rte_eth_rss_conf = unsafe { std::mem::zeroed() };
    conf.rss_key = key.as_mut_ptr();
    conf.rss_key_len = key.len() as u8;
    // SAFETY: valid port; rss_key points at rss_key_len writable bytes.
    let r = unsafe { b::rte_eth_dev_rss_hash_conf_get(port_id, &mut conf) };
    if r != 0 || conf.rss_hf == 0 {
        return None;
    }
    // SAFETY: as in open().
    let mut info: b::rte_eth_dev_info = unsafe { std::mem::zeroed() };
    // SAFETY: valid port id and out-parameter.
    if unsafe { b::rte_eth_dev_info_get(port_id, &mut info) } != 0 {
        return None;
    }
    // Not every driver updates rss_key_len; the device's key size is authoritative.
    let key_len = match usize::from(info.hash_key_size) {
        0 => usize::from(conf.rss_key_len),
        n => n,
    }
    .min(key.len());
    let size = usize::from(info.reta_size);
    let reta = if size == 0 {
        // No table reported: the hash picks the queue directly (hash % queues).
        (0..nq).collect()
    } else {
        let groups = size.div_ceil(64);
        let mut entries: Vec<b::rte_eth_rss_reta_entry64> = (0..groups)
            .map(|_| b::rte_eth_rss_reta_entry64 {
                mask: u64::MAX,
                ..Default::default()
            })
            .collect();
        // SAFETY: `entries` holds reta_size / 64 groups with every mask bit set, as the API
        // requires for a query of the whole table.
        let r =
            unsafe { b::rte_eth_dev_rss_reta_query(port_id, entries.as_mut_ptr(), info.reta_size) };
        if r == 0 {
            entries
                .iter()
                .flat_map(|e| e.reta.iter().copied())
                .take(size)
                .collect()
        } else {
            // The documented default of the PMDs: entry i is queue i % nq.
            (0..size).map(|i| (i % usize::from(nq)) as u16).collect()
        }
    };
    let input = if conf.rss_hf & RSS_L3_SRC_ONLY != 0 {
        RssInput::L3Src
    } else {
        RssInput::L3SrcDst {
            local_v4: cfg.rss_local_v4,
            local_v6: cfg.rss_local_v6,
        }
    };
    Some(Steering::Rss(RssSteering {
        key: key[..key_len].to_vec(),
        reta,
        input,
    }))
}

impl PortQueue for DpdkQueue {
    fn queue_id(&self) -> usize {
        self.id as usize
    }

    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if !self.registered {
            register_thread();
            self.registered = true;
        }
        let want = max.min(BURST).min(self.pool.available()) as u16;
        if want == 0 {
            if max > 0 {
                QueueCounters::add(&self.counters.rx_nobuf, 1);
            }
            return 0;
        }
        // SAFETY: mbufs has room for BURST >= want pointers; the queue id is ours.
        let got =
            unsafe { b::akg_rx_burst(self.dev.port_id, self.id, self.mbufs.as_mut_ptr(), want) }
                as usize;
        let (mut n, mut bytes, mut trunc) = (0usize, 0u64, 0u64);
        for &m in self.mbufs.iter().take(got) {
            match self.pool.get() {
                Some(mut buf) => {
                    let ok = buf.fill_with(|area| {
                        // SAFETY: m is a received mbuf; area is writable for area.len() bytes.
                        let len = unsafe {
                            b::akg_pktmbuf_copy_out(m, area.as_mut_ptr(), area.len() as u32)
                        };
                        usize::try_from(len).ok()
                    });
                    if ok {
                        bytes += buf.len() as u64;
                        out.push(buf);
                        n += 1;
                    } else {
                        trunc += 1;
                        self.pool.put(buf);
                    }
                }
                None => trunc += 1,
            }
            // SAFETY: m came from rx_burst and is freed once.
            unsafe { b::akg_pktmbuf_free(m) };
        }
        self.counters.count_rx(RxTally {
            packets: n as u64,
            bytes,
            truncated: trunc,
            nobuf: false,
        });
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        if !self.registered {
            register_thread();
            self.registered = true;
        }
        // Frames an mbuf cannot hold are dropped up front so one bad frame cannot block the
        // queue (the default mbuf has 2048 data bytes after its headroom).
        let mut dropped = 0usize;
        let mut i = 0;
        while i < pkts.len() {
            if pkts[i].is_empty() || pkts[i].len() > MBUF_DATA_ROOM {
                let p = pkts.remove(i);
                self.pool.put(p);
                dropped += 1;
            } else {
                i += 1;
            }
        }
        QueueCounters::add(&self.counters.tx_errors, dropped as u64);
        let count = pkts.len().min(BURST);
        if count == 0 {
            return dropped;
        }
        // SAFETY: mbufs has room for BURST >= count pointers; mp is the port's mempool.
        let r = unsafe {
            b::akg_pktmbuf_alloc_bulk(self.dev.mp, self.mbufs.as_mut_ptr(), count as u32)
        };
        if r != 0 {
            QueueCounters::add(&self.counters.tx_ring_full, 1);
            return dropped;
        }
        let mut errors = 0u64;
        let mut filled = 0usize;
        for (i, p) in pkts.iter().take(count).enumerate() {
            let m = self.mbufs[i];
            let len = p.len();
            // SAFETY: m is a fresh empty mbuf; p.data() is valid for len bytes.
            let ok = len <= u16::MAX as usize
                && unsafe { b::akg_pktmbuf_copy_in(m, p.data().as_ptr(), len as u16) } == 0;
            if !ok {
                errors += 1;
            }
            filled += 1;
        }
        // SAFETY: the first `filled` mbufs are filled; DPDK takes ownership of the sent ones.
        let sent = unsafe {
            b::akg_tx_burst(
                self.dev.port_id,
                self.id,
                self.mbufs.as_mut_ptr(),
                filled as u16,
            )
        } as usize;
        for &m in self.mbufs.iter().take(filled).skip(sent) {
            // SAFETY: unsent mbufs are still ours and freed once.
            unsafe { b::akg_pktmbuf_free(m) };
        }
        let bytes: u64 = pkts[..sent].iter().map(|p| p.len() as u64).sum();
        self.counters.count_tx(TxTally {
            packets: sent as u64,
            bytes,
            errors,
            ring_full: sent < filled,
        });
        for p in pkts.drain(..sent) {
            self.pool.put(p);
        }
        sent + dropped
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
