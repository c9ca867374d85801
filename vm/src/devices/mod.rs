//! Emulated port-I/O devices.
