//! SPI-indexed, epoch-protected SA table (see docs/ARCHITECTURE.md).
