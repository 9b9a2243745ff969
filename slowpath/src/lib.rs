//! The akagate slowpath: SIP, sec-agree, IMS-AKA, registrar and proxy, written sans-IO.
