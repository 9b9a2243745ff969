//! `akactl`: operator tool for akagate.

fn main() {}
