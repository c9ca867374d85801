//! Snapshots of the KVM PV state (issue 18): `VmPv::save_state` / `load_state` round trips,
//! the kvmclock continuing across a restore on a host whose TSC is elsewhere (ahead, or
//! younger than the VM's clock), truncated and out-of-range input.

use super::msr;
use super::pvclock::{self, Clock, VcpuTimeInfo};
use super::state::{Effect, Update, VmPv};
use crate::snapshot::codec::{Dec, Enc};
use alloc::vec::Vec;

const TSC_HZ: u64 = 2_000_000_000;
const RAM: u64 = 64 << 20;

fn ram(gpa: u64, len: u64) -> bool {
    gpa.checked_add(len).is_some_and(|end| end <= RAM)
}

// The layout of a saved VmPv (state.rs): the VM's fields, then each vCPU's.
const TSC_HZ_AT: usize = 0;
const EPOCH_AT: usize = 8;
const WALL_SET_AT: usize = 16;
const WALL_GPA_AT: usize = 17;
const WALL_VERSION_AT: usize = 25;
const VCPUS_AT: usize = 29;
const VCPU_AT: usize = 33;
const SYSTEM_TIME_AT: usize = 0;
const STEAL_AT: usize = 8;
const PV_EOI_AT: usize = 16;
const POLL_AT: usize = 24;
const CLOCK_VERSION_AT: usize = 32;
const CLOCK_STALE_AT: usize = 36;
const STEAL_VERSION_AT: usize = 37;
const STEAL_STALE_AT: usize = 41;
const STEAL_NS_AT: usize = 42;
const PV_EOI_PENDING_AT: usize = 50;
const ENABLED_AT: usize = 51;
const VCPU_LEN: usize = 53;

fn fresh(vcpus: usize, epoch: u64) -> VmPv {
    VmPv::new(vcpus, Clock::new(TSC_HZ, epoch).unwrap())
}

fn save(v: &VmPv) -> Vec<u8> {
    let mut e = Enc::default();
    v.save_state(&mut e);
    e.0
}

fn load(v: &mut VmPv, bytes: &[u8], shift: u64) -> Result<(), &'static str> {
    let mut d = Dec::new(bytes);
    let result = v.load_state(&mut d, shift);
    if result.is_ok() {
        assert!(d.done(), "load_state reads every field");
    }
    result
}

/// A fresh state of `v`'s size (its epoch elsewhere) loaded from `v` moved by `shift`.
fn restored(v: &VmPv, shift: u64) -> VmPv {
    let mut r = fresh(v.vcpus.len(), 77);
    load(&mut r, &save(v), shift).expect("a saved state loads");
    r
}

fn ok(r: Option<Result<Effect, msr::PvMsrError>>) -> Effect {
    r.expect("a PV MSR").expect("accepted")
}

/// Three vCPUs after a guest placed everything: wall clock, kvmclock on 0 and 2 (1's
/// disabled after use), steal time on 1 with time stolen, PV EOI on 2 with an offer out,
/// polling forbidden on 0; records written, one left stale.
fn busy() -> VmPv {
    let mut v = fresh(3, 1_000);
    ok(v.wrmsr(0, msr::MSR_KVM_WALL_CLOCK_NEW, 0x3000, ram));
    v.wall_clock(0x3000, 1_700_000_000_000_000_000, 5_000_000);
    ok(v.wrmsr(0, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1001, ram));
    ok(v.wrmsr(2, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1041, ram));
    ok(v.wrmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1081, ram));
    ok(v.wrmsr(1, msr::MSR_KVM_SYSTEM_TIME_NEW, 0x1080, ram));
    ok(v.wrmsr(1, msr::MSR_KVM_STEAL_TIME, 0x2041, ram));
    ok(v.wrmsr(2, msr::MSR_KVM_PV_EOI_EN, 0x2105, ram));
    ok(v.wrmsr(0, msr::MSR_KVM_POLL_CONTROL, 0, ram));
    assert!(v
        .wrmsr(0, msr::MSR_KVM_STEAL_TIME, 0x2043, ram)
        .unwrap()
        .is_err());
    v.clock_update(0, 0).unwrap();
    v.clock_update(0, 0);
    v.clock_changed(0);
    v.clock_update(0, 0).unwrap();
    v.steal_update(1, 0).unwrap();
    v.steal_update(1, 12_345).unwrap();
    v.vcpus[2].pv_eoi_pending = true;
    v.vcpus[1].enabled.kick = true;
    v.vcpus[2].enabled.tlb_flush = true;
    v.pv_eois = 9;
    v
}

#[test]
fn a_busy_state_round_trips_byte_identically() {
    let v = busy();
    let bytes = save(&v);
    assert_eq!(bytes.len(), VCPU_AT + 3 * VCPU_LEN);
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(u64_at(EPOCH_AT), 1_000);
    assert_eq!(u64_at(vcpu_at(1, STEAL_NS_AT)), 12_345);
    let r = restored(&v, 0);
    assert_eq!(save(&r), bytes);
    assert_eq!(r.clock, v.clock);
    assert_eq!(r.wall_clock_gpa, Some(0x3000));
    assert_eq!(r.vcpus, v.vcpus);
    assert_eq!(r.enabled(), v.enabled());
    assert_eq!(
        r.placed().collect::<Vec<_>>(),
        v.placed().collect::<Vec<_>>()
    );
    // The counters are the restoring VM's, not saved.
    assert_eq!((r.pv_eois, r.stolen_ns, r.refused), (0, 0, 0));
    assert_eq!((v.pv_eois, v.stolen_ns, v.refused), (9, 12_345, 1));
    let fresh_state = fresh(2, 5);
    assert_eq!(save(&restored(&fresh_state, 0)), save(&fresh_state));
}

/// The same later inputs on `a` at host TSC `t` and on `b` at `t + shift` (its guest TSC
/// offset `shift` lower) give the same outputs.
fn same_behaviour(a: &mut VmPv, b: &mut VmPv, shift: u64) {
    for vcpu in 0..a.vcpus.len() {
        for m in [
            msr::MSR_KVM_WALL_CLOCK_NEW,
            msr::MSR_KVM_SYSTEM_TIME_NEW,
            msr::MSR_KVM_STEAL_TIME,
            msr::MSR_KVM_PV_EOI_EN,
            msr::MSR_KVM_POLL_CONTROL,
        ] {
            assert_eq!(a.rdmsr(vcpu, m), b.rdmsr(vcpu, m));
        }
        let offset = 40_000u64;
        assert_eq!(
            a.clock_update(vcpu, offset),
            b.clock_update(vcpu, offset.wrapping_sub(shift))
        );
        a.clock_changed(vcpu);
        b.clock_changed(vcpu);
        assert_eq!(
            a.clock_update(vcpu, offset),
            b.clock_update(vcpu, offset.wrapping_sub(shift))
        );
        assert_eq!(a.steal_update(vcpu, 500), b.steal_update(vcpu, 500));
        assert_eq!(
            a.vcpus[vcpu].host_poll_allowed(),
            b.vcpus[vcpu].host_poll_allowed()
        );
    }
    for t in [1_000u64, 9_000_000, 123_456_789_012] {
        assert_eq!(a.clock.ns_at(t), b.clock.ns_at(t.wrapping_add(shift)));
        assert_eq!(
            a.wall_clock(0x3000, 1_800_000_000_000_000_000, t),
            b.wall_clock(0x3000, 1_800_000_000_000_000_000, t.wrapping_add(shift))
        );
    }
    // A guest write refused / accepted alike (the overlap checks see the same areas).
    for (m, value) in [
        (msr::MSR_KVM_STEAL_TIME, 0x1041),
        (msr::MSR_KVM_STEAL_TIME, 0x4001),
        (msr::MSR_KVM_PV_EOI_EN, 0x2045),
    ] {
        assert_eq!(a.wrmsr(0, m, value, ram), b.wrmsr(0, m, value, ram));
    }
}

#[test]
fn a_restored_state_behaves_the_same_with_any_shift() {
    // Ahead, far ahead, and behind (a host younger than the VM's clock: the epoch wraps).
    for shift in [0, 3_000_000_000, 1 << 62, 0u64.wrapping_sub(999_999)] {
        let mut a = busy();
        let mut b = restored(&a, shift);
        assert_eq!(b.clock.epoch_tsc, a.clock.epoch_tsc.wrapping_add(shift));
        same_behaviour(&mut a, &mut b, shift);
    }
}

fn record(u: &Update<{ pvclock::VCPU_TIME_INFO_SIZE }>) -> VcpuTimeInfo {
    super::state_tests::read_info(&u.bytes, 0)
}

#[test]
fn kvmclock_continues_across_a_restore_and_the_record_only_gets_a_new_version() {
    // Snapshot at host TSC 10^12 with the guest TSC 5000 ahead of the host's; restored on
    // a host whose TSC reads 7·10^9 (younger than the VM's clock: the epoch wraps).
    let (snapshot_tsc, restore_tsc, offset) = (1_000_000_000_000u64, 7_000_000_000u64, 5_000);
    let shift = restore_tsc.wrapping_sub(snapshot_tsc);
    let mut a = busy();
    let before = a.clock.ns_at(snapshot_tsc);
    a.clock_changed(0);
    let old = record(&a.clock_update(0, offset).unwrap());
    let guest_tsc = snapshot_tsc + offset;
    // Exact at 2 GHz (mul = 2^31, shift 0).
    assert_eq!(old.read(guest_tsc), a.clock.ns_at(snapshot_tsc));

    let mut b = restored(&a, shift);
    assert!(b.clock.epoch_tsc > restore_tsc, "wrapped below TSC 0");
    assert_eq!(b.clock.ns_at(restore_tsc), before, "the pause is invisible");
    assert_eq!(
        b.clock.ns_at(restore_tsc + TSC_HZ),
        before + pvclock::NSEC_PER_SEC
    );
    // The kernel marks the record stale; it is rewritten with the same anchor.
    let new_offset = offset.wrapping_sub(shift);
    b.clock_changed(0);
    let new = record(&b.clock_update(0, new_offset).unwrap());
    assert_eq!(new.version, old.version + 2);
    assert_eq!(
        (new.tsc_timestamp, new.system_time, new.scale, new.flags),
        (old.tsc_timestamp, old.system_time, old.scale, old.flags)
    );
    // The guest's TSC continues: the old record (in restored RAM) and the new one agree.
    let later = guest_tsc + 3 * TSC_HZ;
    assert_eq!(old.read(later), new.read(later));
    assert_eq!(
        new.read(restore_tsc.wrapping_add(new_offset) + 3 * TSC_HZ),
        b.clock.ns_at(restore_tsc + 3 * TSC_HZ)
    );
}

#[test]
fn before_the_epoch_the_clock_reads_zero() {
    let c = Clock::new(TSC_HZ, 1_000).unwrap();
    assert_eq!(c.ns_at(999), 0);
    assert_eq!(c.ns_at(0), 0);
    assert_eq!(c.ns_at(3_000), 1_000);
    let wrapped = Clock::new(TSC_HZ, 0u64.wrapping_sub(2_000)).unwrap();
    assert_eq!(wrapped.ns_at(0), 1_000);
    assert_eq!(wrapped.ns_at(u64::MAX - 2_500), 0);
}

#[test]
fn every_truncation_is_refused_and_changes_nothing() {
    let full = save(&busy());
    let mut target = busy();
    target.stolen_ns = 4;
    let before = save(&target);
    for len in 0..full.len() {
        assert_eq!(
            load(&mut target, &full[..len], 0),
            Err("the section ends early"),
            "{len} bytes"
        );
    }
    assert_eq!(save(&target), before);
    assert_eq!(target.stolen_ns, 4);
}

fn put_u8(b: &mut [u8], at: usize, v: u8) {
    b[at] = v;
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Where field `at` of vCPU `vcpu` is.
fn vcpu_at(vcpu: usize, at: usize) -> usize {
    VCPU_AT + vcpu * VCPU_LEN + at
}

/// A change to a saved state and the refusal it must meet.
type Case = (fn(&mut [u8]), &'static str);

#[test]
fn out_of_range_fields_are_refused_by_name_and_change_nothing() {
    let cases: [Case; 27] = [
        (
            |b| put_u64(b, TSC_HZ_AT, TSC_HZ + 1),
            "kvmclock TSC rate differs from the restoring VM's",
        ),
        (
            |b| put_u8(b, WALL_SET_AT, 2),
            "wall clock flag neither 0 nor 1",
        ),
        (
            |b| put_u8(b, WALL_SET_AT, 0),
            "an unset wall clock with an address",
        ),
        (|b| put_u32(b, WALL_VERSION_AT, 3), "wall clock version odd"),
        (
            |b| put_u32(b, VCPUS_AT, 2),
            "vCPU count differs from the restoring VM's",
        ),
        (
            |b| put_u64(b, vcpu_at(1, STEAL_AT), 0x2043),
            "steal-time MSR with reserved bits set",
        ),
        (
            |b| put_u64(b, vcpu_at(2, PV_EOI_AT), 0x2107),
            "PV EOI MSR with reserved bits set",
        ),
        (
            |b| put_u64(b, vcpu_at(0, POLL_AT), 2),
            "poll-control MSR with reserved bits set",
        ),
        (
            |b| put_u32(b, vcpu_at(0, CLOCK_VERSION_AT), 7),
            "kvmclock version odd",
        ),
        (
            |b| put_u8(b, vcpu_at(0, CLOCK_STALE_AT), 9),
            "kvmclock stale flag neither 0 nor 1",
        ),
        (
            |b| put_u32(b, vcpu_at(1, STEAL_VERSION_AT), 1),
            "steal-time version odd",
        ),
        (
            |b| put_u8(b, vcpu_at(1, STEAL_STALE_AT), 2),
            "steal-time stale flag neither 0 nor 1",
        ),
        (
            |b| put_u8(b, vcpu_at(0, STEAL_STALE_AT), 1),
            "steal time stale while disabled",
        ),
        (
            |b| put_u8(b, vcpu_at(2, PV_EOI_PENDING_AT), 3),
            "PV EOI pending flag neither 0 nor 1",
        ),
        (
            |b| put_u8(b, vcpu_at(1, PV_EOI_PENDING_AT), 1),
            "PV EOI pending while disabled",
        ),
        (
            |b| put_u16(b, vcpu_at(0, ENABLED_AT), 1 << 9),
            "enabled-feature flags with unknown bits set",
        ),
        (
            |b| put_u64(b, WALL_GPA_AT, 0x3002),
            "wall clock address not 4-byte aligned",
        ),
        (
            |b| put_u64(b, WALL_GPA_AT, 0x3FF8),
            "wall clock crosses a page or the end of the address space",
        ),
        (
            |b| put_u64(b, WALL_GPA_AT, 0x1044),
            "kvmclock area overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(0, SYSTEM_TIME_AT), 0x1011),
            "kvmclock address not 32-byte aligned",
        ),
        (
            |b| put_u64(b, vcpu_at(0, SYSTEM_TIME_AT), 0x1041),
            "kvmclock area overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(0, SYSTEM_TIME_AT), 0xFFFF_FFFF_FFFF_FFE1),
            "PV area at the end of the address space",
        ),
        (
            |b| put_u64(b, vcpu_at(1, STEAL_AT), 0x1001),
            "steal-time area overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(2, PV_EOI_AT), 0x2041),
            "PV EOI word overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(2, PV_EOI_AT), 0x3009),
            "PV EOI word overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(0, STEAL_AT), 0x3001),
            "steal-time area overlaps another PV area",
        ),
        (
            |b| put_u64(b, vcpu_at(1, PV_EOI_AT), 0x2045),
            "PV EOI word overlaps another PV area",
        ),
    ];
    let valid = save(&busy());
    for (i, (change, why)) in cases.into_iter().enumerate() {
        let mut bytes = valid.clone();
        change(&mut bytes);
        let mut target = fresh(3, 5);
        let before = save(&target);
        assert_eq!(load(&mut target, &bytes, 0), Err(why), "case {i}");
        assert_eq!(save(&target), before, "case {i}: unchanged");
    }
    // A disabled kvmclock MSR keeps whatever address was written with bit 0 clear.
    let mut bytes = valid.clone();
    put_u64(&mut bytes, vcpu_at(0, SYSTEM_TIME_AT), 0x1040);
    assert_eq!(load(&mut fresh(3, 5), &bytes, 0), Ok(()));
    // The same state into a VM of another size.
    assert_eq!(
        load(&mut fresh(4, 5), &valid, 0),
        Err("vCPU count differs from the restoring VM's")
    );
}
