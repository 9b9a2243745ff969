//! `akactl milenage`: computes OPc, MAC-A, MAC-S, RES, CK, IK, AK, AK* and AUTN for one
//! subscriber and challenge, printed as one JSON object of lowercase hex strings.

use akagate_slowpath::aka::{AuthVector, Milenage, Sqn};

use crate::args::{hex_arg, Options, UsageError};

const OPTIONS: &[&str] = &["k", "op", "opc", "rand", "sqn", "amf"];

/// Runs the subcommand on its arguments; returns the JSON line or a usage error.
pub fn run(args: &[String]) -> Result<String, UsageError> {
    let o = Options::parse(args, OPTIONS)?;
    let k = hex_arg::<16>("k", o.require("k")?)?;
    let m = match (o.get("op"), o.get("opc")) {
        (Some(op), None) => Milenage::from_op(&k, &hex_arg::<16>("op", op)?),
        (None, Some(opc)) => Milenage::new(&k, &hex_arg::<16>("opc", opc)?),
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "--op/--opc: give exactly one, not both".to_owned(),
            ))
        }
        (None, None) => return Err(UsageError("--op/--opc: one of them is required".to_owned())),
    };
    let rand = hex_arg::<16>("rand", o.require("rand")?)?;
    let sqn = hex_arg::<6>("sqn", o.require("sqn")?)?;
    let amf = hex_arg::<2>("amf", o.require("amf")?)?;

    let av = AuthVector::generate(&m, rand, Sqn::from_bytes(sqn), amf);
    let mac_s = m.f1_star(&rand, &sqn, &amf);
    let ak = m.f5(&rand);
    let fields: [(&str, String); 9] = [
        ("opc", hex::encode(m.opc())),
        ("mac_a", hex::encode(av.autn.mac_a())),
        ("mac_s", hex::encode(mac_s)),
        ("res", hex::encode(av.xres.as_bytes())),
        ("ck", hex::encode(av.ck.as_bytes())),
        ("ik", hex::encode(av.ik.as_bytes())),
        ("ak", hex::encode(ak)),
        ("ak_star", hex::encode(m.f5_star(&rand))),
        ("autn", hex::encode(av.autn.as_bytes())),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":\"{value}\""))
        .collect();
    Ok(format!("{{{}}}", body.join(",")))
}
