//! The CPUID policy with KVM's block and the per-VM PV state ([`super::state`]).

use super::msr::{self, Area, PvMsrError};
use super::pvclock::{self, Clock, VcpuTimeInfo};
use super::state::{self, Effect, VmPv};
use super::steal_time;
use super::*;
use crate::cpuid::{CpuidConfig, CpuidPolicy, HypervisorLeaves, VcpuCpuidState};

/// A host with invariant TSC (CPUID.80000007:EDX[8]) and nothing in the hypervisor range.
fn host(leaf: u32, _sub: u32) -> [u32; 4] {
    match leaf {
        0 => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        1 => [0x306c3, 0x0710_0800, 0x7ffa_fbff, 0xbfeb_fbff],
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0007 => [0, 0, 0, 0x100],
        0x8000_0008 => [0x3027, 0, 0, 0],
        _ => [0; 4],
    }
}

const BULKHEAD: [(u32, [u32; 4]); 1] = [(0x4000_0001, [0x1_0000, 1, 0, 0])];

fn policy(kvm: bool) -> CpuidPolicy {
    let mut cc = CpuidConfig::new(HypervisorLeaves {
        max_leaf: 0x4000_0001,
        signature: *b"BulkheadVMM\0",
        leaves: &BULKHEAD,
    });
    cc.kvm_leaves = kvm.then(|| cpuid_leaves(OFFERED, false));
    CpuidPolicy::from_host(host, &cc)
}

/// Linux's `hypervisor_cpuid_base(sig, 0)` (arch/x86/include/asm/processor.h): the first
/// block in `0x40000000..0x40010000`, step 0x100, whose EBX/ECX/EDX spell `sig`.
fn linux_cpuid_base(p: &CpuidPolicy, sig: &[u8; 12]) -> Option<u32> {
    let vcpu = VcpuCpuidState::default();
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
        let r = p.lookup(base, 0, &vcpu);
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&r[1].to_le_bytes());
        b[4..8].copy_from_slice(&r[2].to_le_bytes());
        b[8..12].copy_from_slice(&r[3].to_le_bytes());
        &b == sig
    })
}

#[test]
fn linux_finds_kvm_at_0x40000100_and_bulkhead_stays_at_0x40000000() {
    let p = policy(true);
    let vcpu = VcpuCpuidState::default();
    assert_eq!(linux_cpuid_base(&p, b"KVMKVMKVM\0\0\0"), Some(0x4000_0100));
    assert_eq!(linux_cpuid_base(&p, b"BulkheadVMM\0"), Some(0x4000_0000));
    assert_eq!(p.lookup(0x4000_0000, 0, &vcpu)[0], 0x4000_0001);
    assert_eq!(p.lookup(0x4000_0001, 0, &vcpu), [0x1_0000, 1, 0, 0]);
    assert_eq!(p.lookup(0x4000_0100, 0, &vcpu)[0], 0x4000_0101);
    let features = p.lookup(0x4000_0101, 0, &vcpu);
    assert_eq!(features, [OFFERED.bits(), 0, 0, 0]);
    assert_eq!(p.lookup(0x4000_0102, 0, &vcpu), [0; 4]);
    assert_eq!(p.lookup(0x4000_0200, 0, &vcpu), [0; 4]);
    // Invariant TSC hidden so kvm-clock keeps its rating of 400.
    assert_eq!(p.lookup(0x8000_0007, 0, &vcpu), [0; 4]);
}

#[test]
fn without_kvm_pv_nothing_changes() {
    let p = policy(false);
    let vcpu = VcpuCpuidState::default();
    assert_eq!(linux_cpuid_base(&p, b"KVMKVMKVM\0\0\0"), None);
    assert_eq!(p.lookup(0x4000_0100, 0, &vcpu), [0; 4]);
    assert_eq!(p.lookup(0x4000_0101, 0, &vcpu), [0; 4]);
    assert_eq!(p.lookup(0x8000_0007, 0, &vcpu)[3], 0x100);
}

#[test]
fn offered_is_what_the_kernel_implements() {
    for f in [
        Features::NOP_IO_DELAY,
        Features::CLOCKSOURCE2,
        Features::STEAL_TIME,
        Features::PV_EOI,
        Features::PV_TLB_FLUSH,
        Features::POLL_CONTROL,
        Features::CLOCKSOURCE_STABLE_BIT,
        Features::PV_UNHALT,
        Features::PV_SEND_IPI,
        Features::PV_SCHED_YIELD,
    ] {
        assert!(OFFERED.contains(f), "{f:?}");
    }
    assert_eq!(OFFERED.bits().count_ones(), 10);
}

const RAM: u64 = 64 << 20;

fn ram(gpa: u64, len: u64) -> bool {
    gpa.checked_add(len).is_some_and(|end| end <= RAM)
}

fn vm() -> VmPv {
    VmPv::new(2, Clock::new(2_000_000_000, 1_000).unwrap())
}

#[test]
fn rdmsr_returns_what_was_written_and_poll_control_resets_to_1() {
    let mut v = vm();
    assert_eq!(v.rdmsr(0, msr::MSR_KVM_POLL_CONTROL), Some(1));
    assert!(v.vcpus[0].host_poll_allowed());
    assert_eq!(v.rdmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW), Some(0));
    assert_eq!(v.rdmsr(0, 0x1234), None);
    assert_eq!(
        v.wrmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1001, ram),
        Some(Ok(Effect::Placed))
    );
    assert_eq!(v.rdmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW), Some(0x1001));
    assert_eq!(v.rdmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW), Some(0));
    assert_eq!(
        v.wrmsr(1, msr::MSR_KVM_STEAL_TIME, 0x2041, ram),
        Some(Ok(Effect::Placed))
    );
    assert_eq!(v.rdmsr(1, msr::MSR_KVM_STEAL_TIME), Some(0x2041));
    assert_eq!(v.vcpus[1].steal_gpa(), Some(0x2040));
    assert_eq!(
        v.wrmsr(0, msr::MSR_KVM_POLL_CONTROL, 0, ram),
        Some(Ok(Effect::None))
    );
    assert!(!v.vcpus[0].host_poll_allowed());
    assert_eq!(
        v.wrmsr(0, msr::MSR_KVM_WALL_CLOCK_NEW, 0x3000, ram),
        Some(Ok(Effect::WallClock(0x3000)))
    );
    assert_eq!(v.rdmsr(1, msr::MSR_KVM_WALL_CLOCK_NEW), Some(0x3000));
    assert_eq!(v.wrmsr(0, 0x10, 0, ram), None, "not a PV MSR");
    let e = v.enabled();
    assert!(e.clock && e.steal && e.poll_control && e.wall_clock && !e.pv_eoi);
}

#[test]
fn hostile_writes_raise_gp_and_change_nothing() {
    let mut v = vm();
    v.wrmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1001, ram);
    let cases = [
        // Outside RAM, MMIO (the local APIC), unaligned, overlapping kvmclock.
        (msr::MSR_KVM_SYSTEM_TIME_NEW, RAM + 1),
        (msr::MSR_KVM_STEAL_TIME, 0xfee0_0001),
        (msr::MSR_KVM_STEAL_TIME, 0x2021),
        (msr::MSR_KVM_PV_EOI_EN, 0x1011),
        (msr::MSR_KVM_STEAL_TIME, 0x1001),
        (msr::MSR_KVM_STEAL_TIME, 0x2003),
        (msr::MSR_KVM_WALL_CLOCK_NEW, 0x1008),
    ];
    for (i, &(m, value)) in cases.iter().enumerate() {
        let vcpu = i % 2;
        let r = v.wrmsr(vcpu, m, value, ram).unwrap();
        assert!(r.is_err(), "{m:#x} = {value:#x}: {r:?}");
    }
    assert_eq!(v.refused, cases.len() as u64);
    assert_eq!(v.vcpus[1].steal_msr, 0);
    assert_eq!(v.vcpus[0].pv_eoi_msr, 0);
    assert_eq!(v.wall_clock_gpa, None);
    assert!(matches!(
        v.wrmsr(1, msr::MSR_KVM_PV_EOI_EN, 0x1011, ram),
        Some(Err(PvMsrError::Overlaps {
            other: Area::SystemTime,
            ..
        }))
    ));
    // vCPU 0 may move its own clock; vCPU 1 may not place its own on top of it.
    assert_eq!(
        v.wrmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1021, ram),
        Some(Ok(Effect::Placed))
    );
    assert!(v
        .wrmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1021, ram)
        .unwrap()
        .is_err());
}

/// Applies an update the way the kernel does: odd version, fields, even version.
fn apply<const N: usize>(mem: &mut [u8], u: &state::Update<N>) -> u32 {
    let g = u.gpa as usize;
    mem[g..g + 4].copy_from_slice(&u.odd.to_le_bytes());
    mem[g + 4..g + N].copy_from_slice(&u.bytes[4..]);
    mem[g..g + 4].copy_from_slice(&u.bytes[0..4]);
    u.odd
}

pub(super) fn read_info(mem: &[u8], gpa: usize) -> VcpuTimeInfo {
    let b = &mem[gpa..gpa + 32];
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    VcpuTimeInfo {
        version: u32_at(pvclock::OFF_VERSION),
        tsc_timestamp: u64_at(pvclock::OFF_TSC_TIMESTAMP),
        system_time: u64_at(pvclock::OFF_SYSTEM_TIME),
        scale: pvclock::Scale {
            mul: u32_at(pvclock::OFF_TSC_TO_SYSTEM_MUL),
            shift: b[pvclock::OFF_TSC_SHIFT] as i8,
        },
        flags: b[pvclock::OFF_FLAGS],
    }
}

#[test]
fn kvmclock_records_agree_across_vcpus_offsets_and_updates() {
    let mut v = vm();
    let mut mem = alloc::vec![0u8; 0x4000];
    v.wrmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1001, ram);
    v.wrmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1041, ram);
    // vCPU 1's guest TSC runs 5000 ticks ahead of vCPU 0's.
    let u0 = v.clock_update(0, 0).unwrap();
    let u1 = v.clock_update(1, 5000).unwrap();
    assert_eq!(u0.odd % 2, 1);
    assert_eq!(apply(&mut mem, &u0), 1);
    apply(&mut mem, &u1);
    assert_eq!(v.clock_update(0, 0), None, "not stale any more");
    let (a, b) = (read_info(&mem, 0x1000), read_info(&mem, 0x1040));
    assert_eq!((a.version, b.version), (2, 2));
    assert_eq!(a.flags, pvclock::FLAG_TSC_STABLE);
    for host_tsc in [1_000u64, 3_000_000_123, 7_777_777_777_777] {
        let t0 = a.read(host_tsc);
        let t1 = b.read(host_tsc + 5000);
        assert_eq!(t0, t1, "same time on both vCPUs at host TSC {host_tsc}");
        assert!(t0 <= v.clock.ns_at(host_tsc));
        assert!(v.clock.ns_at(host_tsc) - t0 <= 1 + v.clock.ns_at(host_tsc) / (1 << 30));
    }
    // A migration rewrites the record with a new version and the same time.
    let before = a.read(4_000_000_000);
    v.clock_changed(0);
    apply(&mut mem, &v.clock_update(0, 0).unwrap());
    let a2 = read_info(&mem, 0x1000);
    assert_eq!(a2.version, 4);
    assert_eq!(a2.read(4_000_000_000), before);
    // A disabled clock is not written.
    v.wrmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW, 0, ram);
    v.clock_changed(1);
    assert_eq!(v.clock_update(1, 0), None);
}

#[test]
fn wall_clock_is_the_rtc_time_at_kvmclock_zero() {
    let mut v = vm();
    // 2 GHz, epoch at TSC 1000: at TSC 1000 + 3e9 the clock reads 1.5 s.
    let u = v.wall_clock(0x3000, 1_700_000_000_000_000_000, 1_000 + 3_000_000_000);
    assert_eq!((u.odd, u.bytes[0]), (1, 2));
    let sec = u32::from_le_bytes(u.bytes[4..8].try_into().unwrap());
    let nsec = u32::from_le_bytes(u.bytes[8..12].try_into().unwrap());
    assert_eq!((sec, nsec), (1_699_999_998, 500_000_000));
    assert_eq!(v.wall_clock(0x3000, 0, 0).odd, 3);
}

#[test]
fn steal_time_accumulates_real_waits_with_versions() {
    let mut v = vm();
    assert_eq!(v.steal_update(0, 100), None, "not enabled");
    v.wrmsr(0, msr::MSR_KVM_STEAL_TIME, 0x2001, ram);
    let first = v.steal_update(0, 0).unwrap();
    assert_eq!((first.gpa, first.odd), (0x2000, 1));
    assert_eq!(v.steal_update(0, 0), None, "nothing new");
    let u = v.steal_update(0, 1_500).unwrap();
    let u = v.steal_update(0, 2_500).map(|_| u).unwrap();
    let last = v.steal_update(0, 1).unwrap();
    assert_eq!(u.odd, 3);
    assert_eq!(last.odd, 7);
    let steal = u64::from_le_bytes(last.bytes[steal_time::OFF_STEAL..8].try_into().unwrap());
    let version = u32::from_le_bytes(last.bytes[8..12].try_into().unwrap());
    assert_eq!((steal, version), (4_001, 8));
    assert_eq!(last.bytes[steal_time::OFF_PREEMPTED], 0);
    assert_eq!(v.stolen_ns, 4_001);
    // Re-placing restarts the area's count, not the VM's total.
    v.wrmsr(0, msr::MSR_KVM_STEAL_TIME, 0x2041, ram);
    let again = v.steal_update(0, 0).unwrap();
    assert_eq!(&again.bytes[0..8], &[0; 8]);
    assert_eq!(v.stolen_ns, 4_001);
    assert!(!steal_time::on_entry(steal_time::KVM_VCPU_PREEMPTED).flush_tlb);
    assert!(
        steal_time::on_entry(steal_time::KVM_VCPU_PREEMPTED | steal_time::KVM_VCPU_FLUSH_TLB)
            .flush_tlb
    );
}

#[test]
fn pv_eoi_protocol() {
    assert!(state::pv_eoi_allowed(1, false, false));
    assert!(!state::pv_eoi_allowed(2, false, false), "nested");
    assert!(!state::pv_eoi_allowed(1, true, false), "another requested");
    assert!(!state::pv_eoi_allowed(1, false, true), "level-triggered");
    assert!(!state::pv_eoi_allowed(0, false, false));
    assert!(state::pv_eoi_done(0));
    assert!(!state::pv_eoi_done(msr::KVM_PV_EOI_BIT));
    let mut v = vm();
    v.wrmsr(1, msr::MSR_KVM_PV_EOI_EN, 0x2005, ram);
    assert_eq!(v.vcpus[1].pv_eoi_gpa(), Some(0x2004));
    v.vcpus[1].pv_eoi_pending = true;
    v.wrmsr(1, msr::MSR_KVM_PV_EOI_EN, 0, ram);
    assert_eq!(v.vcpus[1].pv_eoi_gpa(), None);
    assert!(
        !v.vcpus[1].pv_eoi_pending,
        "disabling forgets the pending bit"
    );
    assert!(v.enabled().pv_eoi);
}
