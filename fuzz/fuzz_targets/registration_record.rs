//! Fuzzes the registration store's binary record decoder (`registrar/record.rs`, the store's
//! file is disk input): it must never panic, and whatever it accepts is the record its owned
//! form encodes to, byte for byte (the format has one encoding per registration).
#![no_main]

use akagate_slowpath::registrar::{decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(reg) = decode_record(data) {
        let again = encode_record(&reg).expect("decoded keys are hex");
        assert_eq!(&*again, data);
    }
});
