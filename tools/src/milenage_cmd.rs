//! `akactl milenage`: computes OPc, MAC-A, MAC-S, RES, CK, IK, AK, AK* and AUTN for one
//! subscriber and challenge, printed as one JSON object of lowercase hex strings.

use akagate_slowpath::aka::{AuthVector, Milenage, Sqn};

use crate::args::Hex;

/// `akactl milenage`: one subscriber's K and OP or OPc, and one challenge (hex, either case).
/// No `Debug`: the values are keys.
#[derive(clap::Args)]
pub struct MilenageArgs {
    /// Subscriber key K (16 bytes)
    #[arg(long, value_name = "HEX", value_parser = Hex::<16>)]
    k: [u8; 16],
    #[command(flatten)]
    operator: OperatorKey,
    /// RAND (16 bytes)
    #[arg(long, value_name = "HEX", value_parser = Hex::<16>)]
    rand: [u8; 16],
    /// SQN (6 bytes)
    #[arg(long, value_name = "HEX", value_parser = Hex::<6>)]
    sqn: [u8; 6],
    /// AMF (2 bytes)
    #[arg(long, value_name = "HEX", value_parser = Hex::<2>)]
    amf: [u8; 2],
}

/// The operator variant key: exactly one of OP and OPc.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct OperatorKey {
    /// Operator variant key OP (16 bytes); OPc is derived from it
    #[arg(long, value_name = "HEX", value_parser = Hex::<16>)]
    op: Option<[u8; 16]>,
    /// Derived operator key OPc (16 bytes)
    #[arg(long, value_name = "HEX", value_parser = Hex::<16>)]
    opc: Option<[u8; 16]>,
}

/// Computes the outputs for `a`; returns the JSON line, or a usage error (clap's group already
/// asks for exactly one of `--op` and `--opc`).
pub fn run(a: &MilenageArgs) -> Result<String, String> {
    let (k, rand, sqn, amf) = (&a.k, a.rand, a.sqn, a.amf);
    let m = match (&a.operator.op, &a.operator.opc) {
        (Some(op), None) => Milenage::from_op(k, op),
        (None, Some(opc)) => Milenage::new(k, opc),
        _ => return Err("give exactly one of --op and --opc".to_owned()),
    };
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
