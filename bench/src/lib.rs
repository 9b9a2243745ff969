//! UE simulator, pktgen harness and benchmark helpers for akagate.
