//! vCPU placement: which physical CPU each vCPU of each VM calls home, and which CPUs belong
//! to a dedicated (real-time) VM. The hypervisor plans once at boot, after the application
//! processors have started, from the VMs' `vcpus`, `cpus` and `dedicated`
//! (docs/configuration.md, "Placement") and the CPUs that entered VMX root.
//!
//! Rules, applied in this order:
//! 1. a dedicated VM's vCPU *i* runs on `cpus[i]`; every CPU in its `cpus` is dedicated to it
//!    (also those beyond its vCPU count: they stay idle, nothing else runs there);
//! 2. a pinned VM (with `cpus`, not dedicated) has vCPU *i* on `cpus[i % len]`;
//! 3. a pool VM (no `cpus`) has each vCPU, in VM then vCPU order, on the non-dedicated CPU
//!    with the fewest vCPUs homed on it so far (pinned ones count), ties to the lowest index.
//!
//! The configuration parser already refuses the conflicts the file shows (a CPU given to two
//! dedicated VMs, ...); [`plan`] checks them again so it is total over any input, and adds the
//! checks that need the machine: a CPU that is not there, no CPU left for the pool.

use crate::config::VmConfig;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One VM as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmRequest<'a> {
    pub name: &'a str,
    pub vcpus: u32,
    /// `cpus = [...]`; `None`: the pool.
    pub cpus: Option<&'a [u32]>,
    pub dedicated: bool,
}

impl<'a> From<&'a VmConfig> for VmRequest<'a> {
    fn from(vm: &'a VmConfig) -> Self {
        VmRequest {
            name: &vm.name,
            vcpus: vm.vcpus,
            cpus: vm.cpus.as_deref(),
            dedicated: vm.dedicated,
        }
    }
}

/// A vCPU: the VM's index in the request list and the vCPU's index in the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VcpuRef {
    pub vm: usize,
    pub vcpu: u32,
}

/// One usable physical CPU in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    /// The CPU's index (0 = the boot CPU).
    pub cpu: u32,
    /// `Some(vm)`: dedicated to that VM (index in the request list).
    pub dedicated_to: Option<usize>,
    /// The vCPUs homed here, in planning order.
    pub vcpus: Vec<VcpuRef>,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `homes[vm][vcpu]`: the physical CPU vCPU `vcpu` of VM `vm` runs on.
    pub homes: Vec<Vec<u32>>,
    /// Every usable CPU, in increasing index order.
    pub cpus: Vec<CpuPlan>,
}

impl Placement {
    /// The home CPU of a vCPU, `None` for an index out of range.
    pub fn home(&self, vm: usize, vcpu: u32) -> Option<u32> {
        self.homes.get(vm)?.get(vcpu as usize).copied()
    }

    /// The plan of a CPU, `None` when it is not usable.
    pub fn cpu(&self, cpu: u32) -> Option<&CpuPlan> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }

    /// The VM a CPU is dedicated to.
    pub fn dedicated_to(&self, cpu: u32) -> Option<usize> {
        self.cpu(cpu)?.dedicated_to
    }

    /// The number of vCPUs homed on a CPU (0 for a CPU that is not usable).
    pub fn load(&self, cpu: u32) -> usize {
        self.cpu(cpu).map_or(0, |c| c.vcpus.len())
    }
}

/// Why the VMs cannot be placed on the CPUs there are. The text says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// No CPU entered VMX root (the boot CPU always should).
    NoCpus,
    /// A VM with `vcpus = 0`.
    NoVcpus { vm: String },
    /// An empty `cpus`.
    EmptyCpus { vm: String },
    /// A CPU twice in one VM's `cpus`.
    DuplicateCpu { vm: String, cpu: u32 },
    /// A pinned (non-dedicated) VM names a CPU that is not in VMX root.
    CpuNotPresent {
        vm: String,
        cpu: u32,
        present: Vec<u32>,
    },
    /// A dedicated VM names a CPU that is not in VMX root: it would lose a CPU it owns.
    DedicatedCpuMissing {
        vm: String,
        cpu: u32,
        present: Vec<u32>,
    },
    /// `dedicated` without `cpus`.
    DedicatedWithoutCpus { vm: String },
    /// A dedicated VM with fewer CPUs than vCPUs.
    DedicatedTooFewCpus { vm: String, vcpus: u32, cpus: usize },
    /// A CPU dedicated to `dedicated` is also in the `cpus` of `other` (dedicated or not).
    DedicatedCpuShared {
        cpu: u32,
        dedicated: String,
        other: String,
    },
    /// A pool VM (no `cpus`) and every usable CPU dedicated.
    NoSharedCpu { vm: String, dedicated: Vec<u32> },
}

/// `0, 2, 3`.
struct List<'a>(&'a [u32]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            write!(f, "{}{c}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PlacementError as E;
        match self {
            E::NoCpus => write!(
                f,
                "no CPU is in VMX root, so no vCPU can run: see the platform report's `cpu N:` \
                 lines for why"
            ),
            E::NoVcpus { vm } => write!(f, "[vm.{vm}] has no vCPU: set vcpus = 1 or more"),
            E::EmptyCpus { vm } => write!(
                f,
                "[vm.{vm}] has an empty `cpus`: list its CPUs, e.g. cpus = [1], or leave `cpus` \
                 out to run on the shared pool"
            ),
            E::DuplicateCpu { vm, cpu } => {
                write!(f, "[vm.{vm}] lists CPU {cpu} twice in `cpus`: list it once")
            }
            E::CpuNotPresent { vm, cpu, present } => write!(
                f,
                "[vm.{vm}] is pinned to CPU {cpu}, which is not in VMX root (the CPUs are {}): \
                 pin it to those, leave `cpus` out to use the pool, or run on a machine with \
                 more CPUs",
                List(present)
            ),
            E::DedicatedCpuMissing { vm, cpu, present } => write!(
                f,
                "the dedicated [vm.{vm}] owns CPU {cpu}, which is not in VMX root (the CPUs are \
                 {}): give it CPUs that are there (a real-time VM never runs on a CPU it does \
                 not own), or run on a machine with more CPUs",
                List(present)
            ),
            E::DedicatedWithoutCpus { vm } => write!(
                f,
                "[vm.{vm}] is dedicated but has no `cpus`: name the CPUs it owns, e.g. cpus = \
                 [1]"
            ),
            E::DedicatedTooFewCpus { vm, vcpus, cpus } => write!(
                f,
                "more dedicated vCPUs than CPUs: [vm.{vm}] has vcpus = {vcpus} but {cpus} CPUs \
                 in `cpus`; list more or set vcpus = {cpus}"
            ),
            E::DedicatedCpuShared {
                cpu,
                dedicated,
                other,
            } => write!(
                f,
                "CPU {cpu} is dedicated to [vm.{dedicated}] and also in the `cpus` of \
                 [vm.{other}]: remove it from [vm.{other}]"
            ),
            E::NoSharedCpu { vm, dedicated } => write!(
                f,
                "[vm.{vm}] runs on the shared pool (no `cpus`), but every CPU in VMX root ({}) \
                 is dedicated: take a CPU out of a dedicated VM's `cpus`, or run on a machine \
                 with more CPUs",
                List(dedicated)
            ),
        }
    }
}

impl core::error::Error for PlacementError {}

/// Places every vCPU of `vms` on the `usable` CPUs (those in VMX root, any order, possibly
/// with gaps such as `[0, 2, 3]`). The rules are in the module documentation.
pub fn plan(vms: &[VmRequest<'_>], usable: &[u32]) -> Result<Placement, PlacementError> {
    let mut present: Vec<u32> = usable.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.is_empty() {
        return Err(PlacementError::NoCpus);
    }
    check_requests(vms)?;
    let mut cpus: Vec<CpuPlan> = present
        .iter()
        .map(|&cpu| CpuPlan {
            cpu,
            dedicated_to: None,
            vcpus: Vec::new(),
        })
        .collect();
    let slot = |cpus: &[CpuPlan], cpu: u32| cpus.binary_search_by_key(&cpu, |c| c.cpu).ok();
    // Rule 1: dedicated VMs own their CPUs before anything is homed.
    for (i, vm) in vms.iter().enumerate().filter(|(_, vm)| vm.dedicated) {
        for &cpu in vm.cpus.unwrap_or_default() {
            let s = slot(&cpus, cpu).ok_or_else(|| PlacementError::DedicatedCpuMissing {
                vm: vm.name.into(),
                cpu,
                present: present.clone(),
            })?;
            if let Some(owner) = cpus[s].dedicated_to {
                return Err(PlacementError::DedicatedCpuShared {
                    cpu,
                    dedicated: vms[owner].name.into(),
                    other: vm.name.into(),
                });
            }
            cpus[s].dedicated_to = Some(i);
        }
    }
    let mut homes: Vec<Vec<u32>> = vms.iter().map(|_| Vec::new()).collect();
    // Rules 1 and 2: dedicated and pinned vCPUs.
    for (i, vm) in vms.iter().enumerate() {
        let Some(list) = vm.cpus else { continue };
        for vcpu in 0..vm.vcpus {
            let cpu = list[vcpu as usize % list.len()];
            let s = slot(&cpus, cpu).ok_or_else(|| PlacementError::CpuNotPresent {
                vm: vm.name.into(),
                cpu,
                present: present.clone(),
            })?;
            match cpus[s].dedicated_to {
                Some(owner) if owner != i => {
                    return Err(PlacementError::DedicatedCpuShared {
                        cpu,
                        dedicated: vms[owner].name.into(),
                        other: vm.name.into(),
                    })
                }
                _ => {}
            }
            cpus[s].vcpus.push(VcpuRef { vm: i, vcpu });
            homes[i].push(cpu);
        }
        // A CPU beyond the vCPU count of a pinned VM is still checked: the list is the
        // user's statement of where the VM may run.
        for &cpu in list.iter().skip(vm.vcpus as usize) {
            let s = slot(&cpus, cpu).ok_or_else(|| PlacementError::CpuNotPresent {
                vm: vm.name.into(),
                cpu,
                present: present.clone(),
            })?;
            if let Some(owner) = cpus[s].dedicated_to.filter(|&o| o != i) {
                return Err(PlacementError::DedicatedCpuShared {
                    cpu,
                    dedicated: vms[owner].name.into(),
                    other: vm.name.into(),
                });
            }
        }
    }
    // Rule 3: the pool, least-loaded first, ties to the lowest index (`cpus` is sorted and
    // `min_by_key` keeps the first of equal minima).
    for (i, vm) in vms.iter().enumerate().filter(|(_, vm)| vm.cpus.is_none()) {
        for vcpu in 0..vm.vcpus {
            let s = (0..cpus.len())
                .filter(|&s| cpus[s].dedicated_to.is_none())
                .min_by_key(|&s| cpus[s].vcpus.len())
                .ok_or_else(|| PlacementError::NoSharedCpu {
                    vm: vm.name.into(),
                    dedicated: present.clone(),
                })?;
            cpus[s].vcpus.push(VcpuRef { vm: i, vcpu });
            homes[i].push(cpus[s].cpu);
        }
    }
    Ok(Placement { homes, cpus })
}

/// What the configuration parser also refuses (vm::config), checked again for any input.
fn check_requests(vms: &[VmRequest<'_>]) -> Result<(), PlacementError> {
    for vm in vms {
        let name = || String::from(vm.name);
        if vm.vcpus == 0 {
            return Err(PlacementError::NoVcpus { vm: name() });
        }
        if let Some(list) = vm.cpus {
            if list.is_empty() {
                return Err(PlacementError::EmptyCpus { vm: name() });
            }
            let repeated = list
                .iter()
                .enumerate()
                .find(|(i, c)| list[..*i].contains(c));
            if let Some((_, &cpu)) = repeated {
                return Err(PlacementError::DuplicateCpu { vm: name(), cpu });
            }
        }
        if vm.dedicated {
            let list = vm
                .cpus
                .ok_or_else(|| PlacementError::DedicatedWithoutCpus { vm: name() })?;
            if (list.len() as u64) < u64::from(vm.vcpus) {
                return Err(PlacementError::DedicatedTooFewCpus {
                    vm: name(),
                    vcpus: vm.vcpus,
                    cpus: list.len(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
