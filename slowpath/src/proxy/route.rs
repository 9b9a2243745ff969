//! Request and response routing between registered UEs over their SA sets.

use std::net::IpAddr;
use std::time::Instant;

use akagate_fastpath::ipc::{Flow, SipIn};

use super::message::{identity_key, uri_of, via_branch, SipMsg, Start};
use super::reginfo::reginfo_full;
use super::{Dialog, Transaction};
use crate::core::{Action, Core};
use crate::registrar::{SaSetExt, SetKind};

/// Our host in Via / Record-Route / Contact (IPv6 in brackets, RFC 3261 25.1).
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Removes `sec-agree` from an option-tag header, dropping the header if nothing is left
/// (TS 24.229 5.2.6.3: sec-agree is hop-by-hop between UE and P-CSCF).
fn strip_tag(msg: &mut SipMsg, name: &str, tag: &str) {
    let rest: Vec<String> = msg
        .list(name)
        .into_iter()
        .filter(|t| !t.eq_ignore_ascii_case(tag))
        .collect();
    let had = msg.header(name).is_some();
    msg.remove(name);
    if had && !rest.is_empty() {
        msg.push(name, rest.join(", "));
    }
}

impl Core {
    fn reply_to(
        &mut self,
        out: &mut Vec<Action>,
        flow: Flow,
        msg: &SipMsg,
        code: u16,
        reason: &str,
    ) {
        if msg.method() == Some("ACK") {
            return;
        }
        let tag = self.token(8);
        Core::send(out, flow, &msg.response(code, reason, &tag), false);
    }

    /// A non-REGISTER request from a UE.
    pub(crate) fn on_request(
        &mut self,
        mut msg: SipMsg,
        sip: &SipIn,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        // Only requests through an active (or still living old) SA of a registration pass
        // (TS 24.229 5.2.6.1; TS 33.203 6.3: unprotected requests other than REGISTER are refused).
        let from = sip.via_spi.and_then(|spi| {
            let key = self.by_spi.get(&spi)?.clone();
            let kind = self.regs.get(&key)?.kind_of(spi)?;
            (kind != SetKind::Pending).then_some((key, spi))
        });
        let Some((key, spi)) = from else {
            return self.reply_to(out, sip.flow, &msg, 403, "Forbidden");
        };
        self.note_traffic(&key, spi, out);

        let max_forwards = match msg.header("Max-Forwards").map(|v| v.trim().parse::<u8>()) {
            None => 70,
            Some(Ok(0)) => return self.reply_to(out, sip.flow, &msg, 483, "Too Many Hops"),
            Some(Ok(n)) => n - 1,
            Some(Err(_)) => return self.reply_to(out, sip.flow, &msg, 400, "Bad Max-Forwards"),
        };
        let (Some(call_id), Some(method)) = (
            msg.header("Call-ID").map(str::to_string),
            msg.method().map(str::to_string),
        ) else {
            return self.reply_to(out, sip.flow, &msg, 400, "Bad Request");
        };
        if method == "SUBSCRIBE"
            && msg.header("Event").is_some_and(|e| {
                e.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("reg"))
            })
        {
            return self.reg_subscribe(&msg, sip, &key, now, out);
        }

        // Target: the other party of a dialog, else the registered owner of the Request-URI.
        let dialog = self.dialogs.get(&call_id).cloned();
        let initial = dialog.is_none();
        let target = match &dialog {
            Some(d) if d.caller == key => d.callee.clone(),
            Some(d) => d.caller.clone(),
            None => {
                let Start::Request { uri, .. } = &msg.start else {
                    return;
                };
                let Some(sub) = self.hss.by_impu(&identity_key(uri)) else {
                    return self.reply_to(out, sip.flow, &msg, 404, "Not Found");
                };
                sub.impi().to_ascii_lowercase()
            }
        };
        let Some((set, contact)) = self
            .regs
            .get(&target)
            .and_then(|r| r.active.as_ref())
            .map(|a| (a.set.clone(), a.contact.clone()))
        else {
            return self.reply_to(out, sip.flow, &msg, 480, "Temporarily Unavailable");
        };
        let flow = set.client_flow();
        let ours = host(flow.local);
        let port_ps = set.port_ps;

        for h in ["Security-Verify", "Security-Client"] {
            msg.remove(h);
        }
        for h in ["Require", "Proxy-Require"] {
            strip_tag(&mut msg, h, "sec-agree");
        }
        // Our own Route entries (Service-Route / Record-Route) are consumed here.
        let me = [
            self.cfg.pcscf_host.to_ascii_lowercase(),
            ours.to_ascii_lowercase(),
        ];
        let routes: Vec<String> = msg
            .list("Route")
            .into_iter()
            .filter(|r| {
                let u = uri_of(r).to_ascii_lowercase();
                !me.iter().any(|m| u.contains(m.as_str()))
            })
            .collect();
        msg.remove("Route");
        if !routes.is_empty() {
            msg.push("Route", routes.join(", "));
        }
        msg.remove("Max-Forwards");
        msg.push("Max-Forwards", max_forwards.to_string());

        if initial {
            if let Start::Request { uri, .. } = &mut msg.start {
                *uri = contact;
            }
            // TS 24.229 5.2.6.3.3: assert the identity from the registration.
            let impus = self
                .regs
                .get(&key)
                .map(|r| r.impus.clone())
                .unwrap_or_default();
            let preferred = msg
                .header("P-Preferred-Identity")
                .map(|p| identity_key(uri_of(p)));
            let asserted = preferred
                .and_then(|p| impus.iter().find(|u| identity_key(u) == p).cloned())
                .or_else(|| impus.first().cloned());
            msg.remove("P-Preferred-Identity");
            msg.remove("P-Asserted-Identity");
            if let Some(a) = asserted {
                msg.push("P-Asserted-Identity", format!("<{a}>"));
            }
            if matches!(method.as_str(), "INVITE" | "SUBSCRIBE") {
                msg.push_front("Record-Route", format!("<sip:{ours}:{port_ps};lr>"));
                self.dialogs.insert(
                    call_id.clone(),
                    Dialog {
                        caller: key.clone(),
                        callee: target.clone(),
                    },
                );
            }
        }
        // TS 24.229: sent-by names our protected server port, so a UE opening a new
        // connection for the response opens it to port_ps.
        let branch = format!("z9hG4bK{}", self.token(8));
        msg.push_front(
            "Via",
            format!("SIP/2.0/TCP {ours}:{port_ps};branch={branch}"),
        );
        if method != "ACK" {
            self.transactions.insert(
                branch,
                Transaction {
                    origin: Some(sip.flow),
                },
            );
        }
        if method == "BYE" || method == "CANCEL" {
            self.dialogs.remove(&call_id);
        }
        Core::send(out, flow, &msg, true);
    }

    /// A response from a UE: pop our Via and return it to where the request came from.
    pub(crate) fn on_response(
        &mut self,
        mut msg: SipMsg,
        sip: &SipIn,
        _now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(key) = sip.via_spi.and_then(|s| self.by_spi.get(&s).cloned()) else {
            log::debug!("dropping unprotected response from {}", sip.flow.ue);
            return;
        };
        if let Some(spi) = sip.via_spi {
            self.note_traffic(&key, spi, out);
        }
        let Some(top) = msg.pop_first("Via") else {
            return;
        };
        let Some(branch) = via_branch(&top).map(str::to_string) else {
            return;
        };
        let code = match msg.start {
            Start::Response { code, .. } => code,
            Start::Request { .. } => return,
        };
        let Some(t) = self.transactions.get(&branch).cloned() else {
            return;
        };
        if code >= 200 {
            self.transactions.remove(&branch);
            if code >= 300 && msg.method() == Some("INVITE") {
                if let Some(cid) = msg.header("Call-ID") {
                    self.dialogs.remove(cid);
                }
            }
        }
        if let Some(flow) = t.origin {
            Core::send(out, flow, &msg, false);
        }
    }

    /// SUBSCRIBE to the UE's own reg event: 200 OK, then a full-state NOTIFY over port_pc.
    fn reg_subscribe(
        &mut self,
        msg: &SipMsg,
        sip: &SipIn,
        key: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(reg) = self.regs.get(key) else {
            return;
        };
        let Some(active) = reg.active.as_ref() else {
            return;
        };
        let impus = reg.impus.clone();
        let (set, reg_contact, left) = (
            active.set.clone(),
            active.contact.clone(),
            active.expires_at.saturating_duration_since(now).as_secs(),
        );
        let Start::Request { uri, .. } = &msg.start else {
            return;
        };
        if !impus.iter().any(|u| identity_key(u) == identity_key(uri)) {
            return self.reply_to(out, sip.flow, msg, 403, "Forbidden");
        }
        let expires = msg
            .header("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok())
            .unwrap_or(600_000)
            .min(left);
        let ours = host(set.local);
        let tag = self.token(8);
        let mut ok = msg.response(200, "OK", &tag);
        ok.push("Expires", expires.to_string());
        ok.push("Contact", format!("<sip:{ours}:{}>", set.port_ps));
        Core::send(out, sip.flow, &ok, false);

        let sub_contact = msg
            .header("Contact")
            .map(|c| uri_of(c).to_string())
            .unwrap_or(reg_contact.clone());
        let branch = format!("z9hG4bK{}", self.token(8));
        let mut n = SipMsg::request("NOTIFY", &sub_contact);
        n.push(
            "Via",
            format!("SIP/2.0/TCP {ours}:{};branch={branch}", set.port_ps),
        );
        n.push("Max-Forwards", "70");
        n.push("From", format!("<{uri}>;tag={tag}"));
        n.push("To", msg.header("From").unwrap_or_default().to_string());
        n.push(
            "Call-ID",
            msg.header("Call-ID").unwrap_or_default().to_string(),
        );
        n.push("CSeq", "1 NOTIFY");
        n.push("Contact", format!("<sip:{ours}:{}>", set.port_ps));
        n.push("Event", "reg");
        n.push("Subscription-State", format!("active;expires={expires}"));
        n.push("Content-Type", "application/reginfo+xml");
        n.body = reginfo_full(0, &impus, &reg_contact, left).into_bytes();
        self.transactions
            .insert(branch, Transaction { origin: None });
        Core::send(out, set.client_flow(), &n, true);
    }
}
