//! Slowpath shards (docs/ARCHITECTURE.md, "Slowpath shards"): which shard allocated each
//! inbound SPI, the SPI allocator each shard's core uses to record it, and the router the
//! workers call to pick the shard of every event (`akagate_proto::shard`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use akagate_fastpath::ipc::WorkerEvent;
use akagate_fastpath::sad::{SadError, SpiAllocator, SpiLayout};
use akagate_proto::shard::{scan, shard_of_addr, shard_of_name, EventRouter, Shard};
use akagate_slowpath::registrar::LocationDirectory;

/// Inbound SPI -> the shard that allocated it, one atomic word per SA-table slot
/// (`spi << 8 | shard + 1`; 0 free): written by the allocating shard before the set is
/// installed, read by every worker without a lock. The SPI is kept whole, so a slot reused
/// under a new generation never answers for the old SPI.
#[derive(Debug)]
pub(super) struct SpiShards {
    layout: SpiLayout,
    slots: Box<[AtomicU64]>,
}

impl SpiShards {
    /// A map for an SA table of `capacity` SPIs.
    pub fn new(capacity: usize) -> Result<Self, SadError> {
        let layout = SpiLayout::for_capacity(capacity)?;
        let slots = (0..1usize << layout.slot_bits())
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(SpiShards { layout, slots })
    }

    fn word(spi: u32, shard: usize) -> u64 {
        (u64::from(spi) << 8) | (shard as u64 + 1)
    }

    /// Notes that `shard` allocated `spi`.
    pub fn set(&self, spi: u32, shard: usize) {
        if let Some(s) = self.slots.get(self.layout.slot(spi)) {
            s.store(Self::word(spi, shard), Ordering::Release);
        }
    }

    /// Forgets `spi` (released).
    pub fn clear(&self, spi: u32) {
        if let Some(s) = self.slots.get(self.layout.slot(spi)) {
            let w = s.load(Ordering::Acquire);
            if w >> 8 == u64::from(spi) {
                let _ = s.compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// The shard that allocated `spi`, if it is still allocated.
    pub fn get(&self, spi: u32) -> Option<usize> {
        let w = self
            .slots
            .get(self.layout.slot(spi))?
            .load(Ordering::Acquire);
        (w != 0 && w >> 8 == u64::from(spi)).then(|| (w & 0xff) as usize - 1)
    }
}

/// The SPI allocator of one shard's core: the SA table's, recording the shard of each SPI
/// so the workers send requests through that set to the shard that owns the registration.
pub(super) struct ShardSpis {
    /// The SA table.
    pub table: Arc<dyn SpiAllocator>,
    /// This shard.
    pub shard: usize,
    /// Shared with the router.
    pub map: Arc<SpiShards>,
}

impl SpiAllocator for ShardSpis {
    fn allocate(&self) -> Result<u32, SadError> {
        let spi = self.table.allocate()?;
        self.map.set(spi, self.shard);
        Ok(spi)
    }

    fn release(&self, spi: u32) -> Result<(), SadError> {
        self.map.clear(spi);
        self.table.release(spi)
    }
}

/// The workers' shard rule (`akagate_proto::shard`): a response by the shard tag in our top
/// Via branch, a request by the tag in our Record-Route at its top Route, then by the shard
/// that allocated the SPI it came through, an unprotected REGISTER by the shard of its IMPI
/// (Authorization username, else the IMPI provisioned for the To URI, TS 24.229 5.1.1.2,
/// TS 33.203 6.1.1), anything else by its source address; connection events go to all.
/// In proxy mode a request from the core goes by the tag in its top Route (our Path or
/// Record-Route), else in its Request-URI (our Contact in a subscription), else to the shard
/// that registered the contact it is addressed to (TS 24.229 5.2.7).
pub(super) struct Router {
    /// Number of shards.
    pub shards: usize,
    /// SPI -> shard.
    pub spis: Arc<SpiShards>,
    /// IMPU (lower-cased) -> IMPI, read-only.
    pub impis: Arc<HashMap<String, String>>,
    /// Proxy mode: our core-side address (a flow to it comes from the IMS core).
    pub core_side: Option<IpAddr>,
    /// Every shard's bindings (a request from the core names a UE by its contact).
    pub directory: Arc<LocationDirectory>,
}

impl Router {
    fn of_name(&self, name: &[u8]) -> usize {
        shard_of_name(name, self.shards)
    }

    /// The shard of the IMPI provisioned for `uri`; an unknown URI hashes as it is when
    /// `or_itself` (the core derives the IMPI of a REGISTER from it), else `None`.
    fn of_impu(&self, uri: &[u8], or_itself: bool) -> Option<usize> {
        let uri = std::str::from_utf8(uri).ok()?.trim().to_ascii_lowercase();
        match self.impis.get(&uri) {
            Some(impi) => Some(self.of_name(impi.as_bytes())),
            None => or_itself.then(|| self.of_name(uri.as_bytes())),
        }
    }
}

impl EventRouter for Router {
    fn route(&self, event: &WorkerEvent) -> Shard {
        let WorkerEvent::Sip(sip) = event else {
            return Shard::All;
        };
        let f = scan(&sip.bytes);
        let tagged = if f.response {
            f.via_shard
        } else {
            f.route_shard
        };
        if let Some(s) = tagged.filter(|&s| s < self.shards) {
            return Shard::One(s);
        }
        if !f.response && self.core_side == Some(sip.flow.local) {
            // From the core: its From names the far party, not one of ours.
            let by_contact = || {
                let uri = std::str::from_utf8(f.request_uri?).ok()?;
                self.directory.shard_of_contact(uri)
            };
            let s = f
                .ruri_shard
                .or_else(by_contact)
                .filter(|&s| s < self.shards);
            return Shard::One(s.unwrap_or_else(|| shard_of_addr(sip.flow.ue, self.shards)));
        }
        if let Some(s) = sip.via_spi.and_then(|spi| self.spis.get(spi)) {
            return Shard::One(s);
        }
        if !f.response && f.method.eq_ignore_ascii_case(b"REGISTER") {
            if let Some(user) = f.username {
                return Shard::One(self.of_name(user));
            }
            if let Some(s) = f.to_uri.and_then(|u| self.of_impu(u, true)) {
                return Shard::One(s);
            }
        } else if !f.response {
            // A request on a flow without SAs (a registration without sec-agree, or over
            // TLS): the shard of the IMPI its From identity belongs to.
            if let Some(s) = f.from_uri.and_then(|u| self.of_impu(u, false)) {
                return Shard::One(s);
            }
        }
        Shard::One(shard_of_addr(sip.flow.ue, self.shards))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_fastpath::ipc::{Flow, SipIn, Transport};

    fn sip(bytes: &str, via_spi: Option<u32>) -> WorkerEvent {
        WorkerEvent::Sip(SipIn {
            flow: Flow {
                ue: "10.0.0.9".parse().unwrap(),
                ue_port: 5060,
                local: "10.0.0.1".parse().unwrap(),
                local_port: 5060,
                proto: Transport::Udp,
            },
            via_spi,
            bytes: bytes.as_bytes().to_vec(),
        })
    }

    #[test]
    fn spi_map_names_the_allocating_shard_until_released() {
        let m = SpiShards::new(1024).unwrap();
        m.set(0x1_0005, 3);
        assert_eq!(m.get(0x1_0005), Some(3));
        // Another generation of the same slot is not that SPI.
        assert_eq!(m.get(0x2_0005), None);
        m.clear(0x2_0005);
        assert_eq!(m.get(0x1_0005), Some(3));
        m.clear(0x1_0005);
        assert_eq!(m.get(0x1_0005), None);
    }

    #[test]
    fn router_follows_the_shard_rule() {
        let spis = Arc::new(SpiShards::new(1024).unwrap());
        spis.set(0x1_0007, 1);
        let impis = HashMap::from([(
            "sip:bob@ims.test".to_string(),
            "bob-impi@ims.test".to_string(),
        )]);
        let r = Router {
            shards: 4,
            spis,
            impis: Arc::new(impis),
            core_side: None,
            directory: Arc::new(LocationDirectory::new(4)),
        };
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP p;branch=z9hG4bKs02-x\r\n\r\n";
        assert_eq!(r.route(&sip(resp, Some(0x1_0007))), Shard::One(2));
        let bye = "BYE sip:a SIP/2.0\r\nRoute: <sip:p:5064;lr;agshard=03>\r\n\r\n";
        assert_eq!(r.route(&sip(bye, Some(0x1_0007))), Shard::One(3));
        let invite = "INVITE sip:b SIP/2.0\r\nRoute: <sip:p:5064;lr>\r\n\r\n";
        assert_eq!(r.route(&sip(invite, Some(0x1_0007))), Shard::One(1));
        let reg = "REGISTER sip:ims.test SIP/2.0\r\nTo: <sip:Bob@ims.test>\r\n\r\n";
        assert_eq!(
            r.route(&sip(reg, None)),
            Shard::One(shard_of_name(b"bob-impi@ims.test", 4))
        );
        let reg = "REGISTER sip:ims.test SIP/2.0\r\nTo: <sip:bob@ims.test>\r\nAuthorization: Digest username=\"carol@ims.test\"\r\n\r\n";
        assert_eq!(
            r.route(&sip(reg, None)),
            Shard::One(shard_of_name(b"carol@ims.test", 4))
        );
        let msg = "MESSAGE sip:p SIP/2.0\r\nFrom: <sip:bob@ims.test>;tag=1\r\n\r\n";
        assert_eq!(
            r.route(&sip(msg, None)),
            Shard::One(shard_of_name(b"bob-impi@ims.test", 4))
        );
        let opt = "OPTIONS sip:p SIP/2.0\r\n\r\n";
        assert_eq!(
            r.route(&sip(opt, None)),
            Shard::One(shard_of_addr("10.0.0.9".parse().unwrap(), 4))
        );
        let closed = WorkerEvent::TcpClosed(match sip(opt, None) {
            WorkerEvent::Sip(s) => s.flow,
            _ => unreachable!(),
        });
        assert_eq!(r.route(&closed), Shard::All);
    }

    /// Issue 10, proxy mode with shards: a request from the core reaches the shard named by
    /// our Path (its top Route) or our subscription Contact (its Request-URI), else the shard
    /// that registered the contact it is addressed to; the same request from a UE does not
    /// go by its Request-URI.
    #[test]
    fn requests_from_the_core_find_their_shard() {
        use akagate_proto::suite::{AuthAlg, EncrAlg, SaKeys, Suite};
        let directory = Arc::new(LocationDirectory::new(4));
        let ue: IpAddr = "10.0.0.9".parse().unwrap();
        let set = akagate_fastpath::ipc::SaSet {
            ue,
            local: "10.0.0.1".parse().unwrap(),
            suite: Suite {
                auth: AuthAlg::Null,
                encr: EncrAlg::Null,
                keys: SaKeys {
                    integ_key: Vec::new(),
                    encr_key: Vec::new(),
                    salt: [0; 4],
                },
            },
            spi_pc: 1,
            spi_ps: 2,
            spi_uc: 3,
            spi_us: 4,
            port_pc: 5064,
            port_ps: 5066,
            port_uc: 6000,
            port_us: 6002,
        };
        directory.publish(
            "dave@ims.test",
            Some(akagate_slowpath::registrar::Located {
                impus: vec!["sip:dave@ims.test".into()],
                set,
                proto: Transport::Tcp,
                contact: "sip:dave@10.0.0.9:6002".into(),
                spis: vec![1, 2],
                shard: 2,
                flow: None,
            }),
        );
        let mut r = Router {
            shards: 4,
            spis: Arc::new(SpiShards::new(1024).unwrap()),
            impis: Arc::new(HashMap::new()),
            // The test flows' local address is the core side.
            core_side: Some("10.0.0.1".parse().unwrap()),
            directory,
        };
        let invite =
            "INVITE sip:dave@10.0.0.9:6002 SIP/2.0\r\nRoute: <sip:rab12@10.0.0.1:5070;lr;agshard=03>\r\n\r\n";
        assert_eq!(r.route(&sip(invite, None)), Shard::One(3));
        let notify = "NOTIFY sip:10.0.0.1:5070;agshard=01 SIP/2.0\r\nVia: SIP/2.0/TCP s;branch=z9hG4bKn\r\n\r\n";
        assert_eq!(r.route(&sip(notify, None)), Shard::One(1));
        let invite = "INVITE SIP:Dave@10.0.0.9:6002 SIP/2.0\r\nFrom: <sip:x@y>;tag=1\r\n\r\n";
        assert_eq!(r.route(&sip(invite, None)), Shard::One(2));
        let unknown = "INVITE sip:erin@10.0.0.8 SIP/2.0\r\n\r\n";
        let by_addr = Shard::One(shard_of_addr(ue, 4));
        assert_eq!(r.route(&sip(unknown, None)), by_addr);
        // Not from the core: the Request-URI picks nothing.
        r.core_side = Some("10.9.9.9".parse().unwrap());
        assert_eq!(r.route(&sip(notify, None)), by_addr);
    }
}
