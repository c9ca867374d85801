//! The device part of a snapshot: the platform section (the legacy PC devices, then the KVM
//! PV state when the VM offers it), one local APIC section per vCPU and one section per
//! virtio device, each in its model's own encoding (vm::devices, vm::kvm_pv, vm::apic,
//! vm::snapshot::virtio_state).

use super::super::*;
use vm::snapshot::codec::{Dec, Enc};
use vm::snapshot::Snapshot;

/// Heap the device sections of `vm` take at most beside RAM: the platform and the local
/// APICs (a few KiB each) and the virtio devices' state (a RAM disk's contents included).
pub(super) fn estimate(vm: &Vm) -> usize {
    const PER_APIC: usize = 8 << 10;
    const PLATFORM: usize = 8 << 10;
    PLATFORM + vm.lapics.len() * PER_APIC + vm.platform.virtio.snapshot_bytes()
}

/// The sections: platform, local APICs, virtio devices.
#[derive(Debug)]
pub(super) struct Sections {
    pub platform: Vec<u8>,
    pub lapics: Vec<Vec<u8>>,
    pub virtio: Vec<Vec<u8>>,
}

/// Saves `vm`'s devices (its vCPUs parked, its lock held).
pub(super) fn save(vm: &Vm) -> Result<Sections, String> {
    if vm.platform.legacy().registered_ports() != 0 {
        return Err(String::from(
            "the VM has a port device a snapshot cannot hold (a store disk's controller)",
        ));
    }
    let mut e = Enc::default();
    vm.platform.legacy().save_state(&mut e);
    match &vm.kvm_pv {
        None => {
            e.u8(0);
        }
        Some(pv) => {
            e.u8(1);
            pv.save_state(&mut e);
        }
    }
    let lapics = vm
        .lapics
        .iter()
        .map(|l| {
            let mut e = Enc::default();
            l.save_state(&mut e);
            e.0
        })
        .collect();
    let virtio = vm.platform.virtio.save_state()?;
    Ok(Sections {
        platform: e.0,
        lapics,
        virtio,
    })
}

/// Loads the device sections of `snapshot` into the rebuilt `vm` (devices new, from the
/// same configuration), moving device deadlines by `shift` TSC ticks. Every section must be
/// read to its last byte.
pub(super) fn load(vm: &mut Vm, snapshot: &Snapshot, shift: u64) -> Result<(), String> {
    let bad = |what: &str, why: &str| alloc::format!("its {what} section is refused: {why}");
    let mut d = Dec::new(&snapshot.platform);
    vm.platform
        .legacy_mut()
        .load_state(&mut d, shift)
        .map_err(|e| bad("platform", e))?;
    let pv = d
        .u8()
        .ok_or_else(|| bad("platform", "the section ends early"))?;
    match (pv, vm.kvm_pv.as_mut()) {
        (0, None) => {}
        (1, Some(state)) => state
            .load_state(&mut d, shift)
            .map_err(|e| bad("platform", e))?,
        _ => return Err(bad("platform", "its KVM PV state does not match kvm-pv")),
    }
    if !d.done() {
        return Err(bad("platform", "bytes after the last field"));
    }
    if snapshot.lapics.len() != vm.lapics.len() {
        return Err(bad("local-apic", "one per vCPU expected"));
    }
    for (i, (apic, bytes)) in vm.lapics.iter_mut().zip(&snapshot.lapics).enumerate() {
        let mut d = Dec::new(bytes);
        apic.load_state(&mut d, shift)
            .map_err(|e| alloc::format!("its local-apic section {i} is refused: {e}"))?;
        if !d.done() {
            return Err(alloc::format!(
                "its local-apic section {i} is refused: bytes after the last field"
            ));
        }
    }
    vm.platform.virtio.load_state(&snapshot.virtio, &vm.memory)
}
