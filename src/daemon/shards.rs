//! Slowpath shards (docs/ARCHITECTURE.md, "Slowpath shards"): which shard allocated each
//! inbound SPI, the SPI allocator each shard's core uses to record it, and the router the
//! workers call to pick the shard of every event (`akagate_proto::shard`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use akagate_fastpath::ipc::WorkerEvent;
use akagate_fastpath::sad::{SadError, SpiAllocator, SpiLayout};
use akagate_proto::shard::{scan, shard_of_addr, shard_of_name, EventRouter, Shard};

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
pub(super) struct Router {
    /// Number of shards.
    pub shards: usize,
    /// SPI -> shard.
    pub spis: Arc<SpiShards>,
    /// IMPU (lower-cased) -> IMPI, read-only.
    pub impis: Arc<HashMap<String, String>>,
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
}
