//! sec-agree choices a handset or OpenSIPS makes that the default test UE does not: the
//! `alg=null; ealg=aes-gcm` offer (TS 33.203 Annex H/I), and registration without sec-agree
//! when the profile's `sec-agree-required` is false.

mod reg_common;

use akagate_proto::suite::{AuthAlg, EncrAlg};
use reg_common::*;

/// The only offer, exactly as OpenSIPS and Rel-13+ handsets send AES-GCM.
fn gcm_null_offer(ue: &Ue) -> String {
    format!(
        "ipsec-3gpp; alg=null; ealg=aes-gcm; prot=esp; mod=trans; spi-c={}; spi-s={}; port-c={}; port-s={}",
        ue.spi_uc, ue.spi_us, ue.port_uc, ue.port_us
    )
}

#[test]
fn alg_null_aes_gcm_registers_with_annex_i_keys_and_echoed_security_server() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm, EncrAlg::AesCbc];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    let offer = gcm_null_offer(&ue);
    let initial = ue.initial_register().replace(&ue.security_client(), &offer);
    let out = t.sip(ue.unprotected_flow(), None, &initial);
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    let (_, r401) = sent(&out[1]);
    assert!(r401.starts_with("SIP/2.0 401 "), "{r401}");
    // The Security-Server echoes what was offered: alg=null, ealg=aes-gcm.
    let server = header(&r401, "Security-Server").unwrap();
    assert_eq!(
        server,
        format!(
            "ipsec-3gpp;alg=null;ealg=aes-gcm;prot=esp;mod=trans;spi-c={};spi-s={};port-c=5100;port-s=6100;q=0.1",
            set.spi_pc, set.spi_ps
        )
    );
    assert_eq!((set.suite.auth, set.suite.encr), (AuthAlg::Null, EncrAlg::AesGcm));
    // TS 33.203 Annex I: CK_ESP = CK_IM (TS 35.208 set 1), the GCM salt from the TS 33.220
    // KDF (FC 0x59, "AES_GCM_SALT"; IMS-AKA-NOTES worked example), no integrity key.
    assert_eq!(
        hex::encode(&set.suite.keys.encr_key),
        "b40ba9a3c58b2a05bbf0d987b21bf8cb"
    );
    assert_eq!(hex::encode(set.suite.keys.salt), "89273db6");
    assert!(set.suite.keys.integ_key.is_empty());

    // The protected REGISTER echoes the Security-Server in Security-Verify: 200 OK.
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let res = set1_usim_res(&nonce);
    let me = Ue {
        security_server: server.clone(),
        ..ue.clone()
    };
    let reg2 = me
        .protected_register(&set, &nonce, &res, None)
        .replace(&ue.security_client(), &offer);
    let out = t.sip(me.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"), "{out:?}");
}

#[test]
fn alg_null_aes_gcm_security_verify_with_an_hmac_is_refused() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    let offer = gcm_null_offer(&ue);
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &ue.initial_register().replace(&ue.security_client(), &offer),
    );
    let set = installed(&out[0]);
    let (_, r401) = sent(&out[1]);
    let server = header(&r401, "Security-Server").unwrap();
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    // A Security-Verify that names another alg than the one we sent is a bidding-down sign.
    let forged = server.replace("alg=null", "alg=hmac-sha-1-96");
    let reg2 = ue
        .protected_register(&set, &nonce, &set1_usim_res(&nonce), Some(&forged))
        .replace(&ue.security_client(), &offer);
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
}

#[test]
fn alg_null_with_other_ealg_gets_494() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm, EncrAlg::AesCbc, EncrAlg::Null];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    for ealg in ["aes-cbc", "null"] {
        let offer = gcm_null_offer(&ue).replace("aes-gcm", ealg);
        let out = t.sip(
            ue.unprotected_flow(),
            None,
            &ue.initial_register().replace(&ue.security_client(), &offer),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            sent(&out[0]).1.starts_with("SIP/2.0 494 "),
            "ealg={ealg}: {out:?}"
        );
    }
}
