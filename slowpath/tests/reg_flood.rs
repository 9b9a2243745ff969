//! Issue 14: calls and re-registrations between registered UEs keep succeeding while 100k
//! unauthenticated REGISTERs from random addresses flood the core (a quarter of them naming
//! the registered UEs' IMPIs, the rest unknown IMPIs), arriving at 50k/s of simulated time.
//! The core is driven directly (sans-IO), so the figure printed is the slowpath's own CPU
//! rate for the flood: `cargo test --release -p akagate-slowpath --test reg_flood --
//! --nocapture` (docs/BENCHMARKS.md).

mod reg_common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{Transport, WorkerCommand};
use akagate_slowpath::CoreConfig;
use rand::{Rng, SeedableRng};
use reg_common::*;

const FLOOD: u32 = 100_000;
/// Simulated arrival rate of the flood.
const FLOOD_RATE: u32 = 50_000;

#[test]
fn calls_and_reregistrations_succeed_during_a_flood_of_unauthenticated_registers() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let defaults = CoreConfig::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let (mut calls, mut refreshes) = (0, 0);
    let (mut b, mut sb) = (b, sb);
    let mut flood_time = Duration::ZERO;
    let mut answers = std::collections::BTreeMap::<String, u32>::new();
    for n in 0..FLOOD {
        t.now += Duration::from_secs(1) / FLOOD_RATE;
        let ip = IpAddr::from([
            10,
            rng.gen_range(2..=250),
            rng.gen(),
            rng.gen_range(1..=254),
        ]);
        let mut who = Ue::new(&mut t, 0, 5080).with_ip(&ip.to_string(), "10.0.0.1");
        who.imsi = match rng.gen_range(0..8) {
            0 => a.imsi.clone(),
            1 => b.imsi.clone(),
            _ => format!("00101{:010}", rng.gen_range(0..10_000_000_000u64)),
        };
        let text = who
            .initial_register()
            .replace("branch=z9hG4bKreg1", &format!("branch=z9hG4bKflood{n}"));
        let start = Instant::now();
        let out = t.sip(who.unprotected_flow(), None, &text);
        flood_time += start.elapsed();
        let status = out
            .iter()
            .filter_map(|c| match c {
                WorkerCommand::Send { bytes, .. } => bytes.get(..12),
                _ => None,
            })
            .next()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default();
        *answers.entry(status).or_default() += 1;
        if n % 1000 == 999 {
            let _ = t.core.handle_timeout(t.now);
        }
        if n % 2000 == 1999 {
            call(&mut t, &a, &sa, &b, &sb, n);
            calls += 1;
        }
        if n % 10_000 == 9_999 {
            (b, sb) = reregister(&mut t, &b, &sb, n);
            refreshes += 1;
        }
    }
    let stats = t.core.stats();
    let rate = f64::from(FLOOD) / flood_time.as_secs_f64();
    eprintln!(
        "flood of {FLOOD} unauthenticated REGISTERs: {rate:.0} REGISTERs/s of slowpath CPU; \
         answers {answers:?}; {calls} calls and {refreshes} re-registrations succeeded; \
         shed: rate/source {} rate/total {} pending/source {} pending/total {}; vectors \
         reused {}, decoys {}",
        stats.register_rate_limited_source,
        stats.register_rate_limited_all,
        stats.challenges_shed_source,
        stats.challenges_shed_all,
        stats.vectors_reused,
        stats.decoy_challenges,
    );
    assert_eq!((calls, refreshes), (50, 10));
    // Over the total rate the newest are shed: 10k of every second's 50k get through (the
    // windows start with the UEs' own registrations, two of the first second's share).
    let per_second = defaults.register_rate_total;
    let challenged = answers.get("SIP/2.0 401 ").copied().unwrap_or(0);
    let shed = answers.get("SIP/2.0 503 ").copied().unwrap_or(0);
    assert_eq!(challenged + shed, FLOOD, "{answers:?}");
    assert!(
        (2 * per_second - 2..=2 * per_second).contains(&challenged),
        "{challenged}"
    );
    assert_eq!(stats.register_rate_limited_all, u64::from(shed));
    // The registered UEs' IMPIs were named 5k times: each holds at most the per-IMPI bound of
    // challenges and spent one SQN per reuse window.
    let view = t.core.registrations_view(t.now);
    for (ue, set) in [(&a, &sa), (&b, &sb)] {
        let r = view.iter().find(|r| r.impi == ue.impi()).unwrap();
        assert_eq!(r.ue, Some(ue.ip));
        let pending = r
            .sets
            .iter()
            .filter(|s| s.state.name() == "pending")
            .count();
        assert!(pending <= defaults.max_pending_per_impi, "{pending}");
        assert!(r.sets.iter().any(|s| s.set.spi_ps == set.spi_ps));
    }
    assert!(stats.vectors_reused > 4_000, "{}", stats.vectors_reused);
}

/// A call from `a` to `b` through their SAs: the INVITE reaches `b`, its 200 reaches `a`.
fn call(
    t: &mut Testbed,
    a: &Ue,
    sa: &akagate_proto::ipc::SaSet,
    b: &Ue,
    sb: &akagate_proto::ipc::SaSet,
    n: u32,
) {
    let invite = invite_text(a, &b.impu(), &format!("z9hG4bKcall{n}"), 70, &sdp(a));
    let out = t.sip(a.protected_flow(sa), Some(sa.spi_ps), &invite);
    let to_b = client_flow(b, sb, Transport::Tcp);
    let fwd = out
        .iter()
        .filter(|c| matches!(c, WorkerCommand::Send { .. }))
        .map(sent)
        .find(|(f, _)| *f == to_b)
        .unwrap_or_else(|| panic!("call {n}: INVITE not forwarded: {out:?}"))
        .1;
    let out = t.sip(to_b, Some(sb.spi_pc), &answer(&fwd, 200, "OK"));
    let ok = out
        .iter()
        .filter(|c| matches!(c, WorkerCommand::Send { .. }))
        .map(sent)
        .find(|(f, _)| *f == a.protected_flow(sa))
        .unwrap_or_else(|| panic!("call {n}: 200 not relayed: {out:?}"))
        .1;
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
}

/// `ue` re-registers through its SAs with new ports (TS 33.203 7.4); returns it and its new set.
fn reregister(
    t: &mut Testbed,
    ue: &Ue,
    set: &akagate_proto::ipc::SaSet,
    n: u32,
) -> (Ue, akagate_proto::ipc::SaSet) {
    let next = ue.with_ports(ue.port_uc + 2);
    let req = next
        .refresh(set, &ue.security_server)
        .replace("branch=z9hG4bKreg3", &format!("branch=z9hG4bKref{n}"));
    let out = t.sip(ue.protected_flow(set), Some(set.spi_ps), &req);
    let new = installed(&out[0]);
    let (_, r) = sent(&out[1]);
    assert!(r.starts_with("SIP/2.0 401 "), "{r}");
    let nonce = param(&header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let next = next.with_server(&new);
    let req = next
        .protected_register(&new, &nonce, &set1_usim_res(&nonce), None)
        .replace("branch=z9hG4bKreg2", &format!("branch=z9hG4bKprot{n}"));
    let out = t.sip(next.protected_flow(&new), Some(new.spi_ps), &req);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"), "{out:?}");
    (next, new)
}
