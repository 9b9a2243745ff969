//! `akabench`: registers simulated UEs against akagate and places calls.

fn main() {}
