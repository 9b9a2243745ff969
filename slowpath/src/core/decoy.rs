//! Challenges for IMPIs the HSS does not know (issue 14: do not tell strangers which IMPIs
//! exist). An unknown IMPI gets the same answers a real one gets — 423, 421/494, 400 for a
//! bad Security-Client, then a 401 with `WWW-Authenticate` and `Security-Server` — but
//! nothing is spent on it: no SQN, no SA set installed. The nonce is `base64(RAND || AUTN)`
//! with AUTN = HMAC-SHA-256(key, IMPI || RAND) truncated, so a later REGISTER that answers it
//! outside any SA (which a real challenge answers with 403) is recognised by the key. Its
//! SPIs are issued and released at once, so they look like real ones and hold no slot; a
//! protected REGISTER can never reach us through them (no SA exists), just as an attacker
//! without K cannot build one for a real IMPI.
//!
//! The limits see decoys as real challenges (`context::DecoyLedger`, a few bytes each): they
//! count against the per-source and total bounds of outstanding challenges and lapse after
//! the challenge timeout, an answer counts only from the address the decoy went to, and an
//! unknown IMPI gets the same RAND again while a real IMPI's unanswered vector would be
//! reused — so neither the 503s nor the nonces tell a stranger which IMPIs exist.

use std::time::Instant;

use akagate_proto::ipc::WorkerCommand;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::register::aka_challenge;
use crate::aka::digest_params::CredentialsRef;
use crate::aka::{AkaNonce, Autn};
use crate::core::{Core, Req};

/// The secret that makes decoy nonces recognisable (random per start; never logged).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct DecoyKey([u8; 32]);

impl DecoyKey {
    /// A fresh key from `rng`.
    pub(crate) fn new(rng: &mut dyn RngCore) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        DecoyKey(k)
    }

    /// The AUTN of the decoy challenge for `impi` with `rand`.
    fn autn(&self, impi: &str, rand: &[u8; 16]) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length (RFC 2104)");
        mac.update(impi.to_ascii_lowercase().as_bytes());
        mac.update(rand);
        let full = mac.finalize().into_bytes();
        let mut autn = [0u8; 16];
        autn.copy_from_slice(&full[..16]);
        autn
    }

    /// The decoy nonce for `impi` with `rand`.
    pub(crate) fn nonce(&self, impi: &str, rand: [u8; 16]) -> String {
        AkaNonce {
            rand,
            autn: Autn::from_bytes(self.autn(impi, &rand)),
            server_data: Vec::new(),
        }
        .encode()
    }

    /// True if `nonce` is a decoy nonce this key made for `impi`.
    pub(crate) fn made(&self, impi: &str, nonce: &str) -> bool {
        AkaNonce::decode(nonce).is_ok_and(|n| {
            n.server_data.is_empty()
                && bool::from(n.autn.as_bytes().ct_eq(&self.autn(impi, &n.rand)))
        })
    }
}

impl core::fmt::Debug for DecoyKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DecoyKey(..)")
    }
}

impl Core {
    /// A REGISTER for an IMPI the HSS does not know, after the checks every REGISTER gets
    /// (Authorization syntax, min-expires, sec-agree): 403 to an answer to one of our decoy
    /// challenges (as a real challenge answered outside its SAs), else a decoy 401.
    pub(crate) fn register_unknown(
        &mut self,
        req: &Req<'_, '_>,
        impi: &str,
        creds: Option<&CredentialsRef<'_>>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let source = req.flow.ue;
        self.shared.decoys.prune(now);
        let id = self.shared.decoys.id(impi);
        let held = self.shared.decoys.holds(source, id);
        // As a real challenge's answer outside its SAs, from the address it went to.
        if held && creds.is_some_and(|c| self.decoy_key.made(impi, &c.nonce)) {
            self.shared.decoys.forget(source, id);
            return self.shared.respond(req, 403, "Forbidden", &[], now, out);
        }
        let Some(chosen) = self.choose_offer(req, now, out) else {
            return;
        };
        if !self.room_for_challenge(req, held, now, out) {
            return;
        }
        let server = match chosen {
            // The same answer a real challenge on this connection gets.
            None => self
                .agrees_tls(req)
                .then(|| crate::secagree::tls_security_server().render()),
            Some(c) => {
                let (pc, ps) = (self.shared.spis.allocate(), self.shared.spis.allocate());
                for spi in [&pc, &ps].into_iter().flatten() {
                    let _ = self.shared.spis.release(*spi);
                }
                let (Ok(spi_pc), Ok(spi_ps)) = (pc, ps) else {
                    return self.shed(req, now, out);
                };
                let p = &self.shared.cfg.profile;
                let server = c.security_server(
                    spi_pc,
                    spi_ps,
                    p.protected_client_port,
                    p.protected_server_port,
                );
                Some(server.render())
            }
        };
        // The vector's RAND last, once nothing can fail: a decoy vector is made only for a
        // decoy challenge that leaves.
        let mut fresh = [0u8; 16];
        self.shared.rng.fill_bytes(&mut fresh);
        let timeout = self.shared.cfg.challenge_timeout;
        let rand = self.shared.decoys.rand(id, fresh, now, timeout);
        let nonce = self.decoy_key.nonce(impi, rand);
        let Ok(www) = aka_challenge(impi, &nonce).and_then(|c| c.render()) else {
            return self
                .shared
                .respond(req, 500, "Server Internal Error", &[], now, out);
        };
        let mut extra = vec![("WWW-Authenticate", www)];
        extra.extend(server.map(|s| ("Security-Server", s)));
        self.shared.decoys.note(source, id, now + timeout);
        self.shared.stats.decoy_challenges += 1;
        tracing::debug!("REGISTER for an unknown IMPI: decoy challenge");
        self.shared
            .respond(req, 401, "Unauthorized", &extra, now, out);
    }
}
