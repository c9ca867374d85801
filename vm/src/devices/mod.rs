//! Emulated legacy PC port-I/O devices.

pub mod pic;
pub mod pit;
