//! `kvm-pv`: the KVM paravirtual MSRs from a hostile guest (docs/hypercall-abi.md §9).
//!
//! With KVM's leaves at 0x40000100 (a VM with `kvm-pv = true`):
//! - `hostile-msrs-gp`: kvmclock, steal-time, PV EOI and wall-clock MSRs pointing outside
//!   RAM, into MMIO (local APIC, IOAPIC), unaligned, with reserved bits, or at another PV
//!   area of the VM each raise #GP: exactly [`HOSTILE`] of them, caught by the IDT, and the
//!   refused writes leave the MSRs as they were;
//! - `kvmclock-monotonic`: a valid kvmclock record (even version, `PVCLOCK_TSC_STABLE_BIT`)
//!   read as Linux does gives a time that advances between two reads;
//! - `steal-time-placed`, `poll-control`: the other areas and MSRs; `wall-clock-written`:
//!   the wall clock plus kvmclock now agrees with the VM's RTC (the machine's date);
//! - `BENCH kvmclock reads=N exits=E ticks=T`: [`BENCH_READS`] kvmclock reads between two
//!   EXIT_STATS calls (the tagged Bulkhead form, docs/hypercall-abi.md §9.2): the exits the
//!   reads cost (none: the record is plain memory) besides the VMX-preemption-timer exits of
//!   the hypervisor's own deadlines (console pacing, slice ends), and the TSC ticks
//!   (scripts/bench, boot/src/bench/kvmclock.rs).
//!
//! Without them (`kvm-pv = false`): `kvm-absent`, the MSRs raise #GP and the leaves read 0.

#![no_std]
#![no_main]

use guest_rt::cpu::{cpuid, inb, outb, rdmsr, rdtsc, wrmsr};
use guest_rt::hv;
use guest_rt::report::{self, fail, pass};
use guest_rt::trap::{self, GP};

guest_rt::entry!(main);

const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
const MSR_KVM_POLL_CONTROL: u32 = 0x4b56_4d05;
const ENABLE: u64 = 1;
const LAPIC: u64 = 0xfee0_0000;
const IOAPIC: u64 = 0xfec0_0000;
/// The hostile writes below, all refused.
const HOSTILE: u64 = 14;
/// kvmclock reads of the benchmark.
const BENCH_READS: u64 = 10_000;
/// Bulkhead's call tag (docs/hypercall-abi.md §9.2): a Bulkhead call in a `kvm-pv` VM.
const BULKHEAD_TAG: u64 = 0x4248_0000;

/// The EXIT_STATS buffer.
#[repr(C, align(8))]
struct StatsBuf([u8; 4096]);
static mut STATS: StatsBuf = StatsBuf([0; 4096]);

/// VMX-preemption timer expired (SDM Vol. 3D Appendix C, basic exit reason 52).
const EXIT_PREEMPTION_TIMER: u32 = 52;

/// The VM's exits so far, (all, VMX-preemption timer): sums of EXIT_STATS's per-reason
/// counts (header: layout, count, entry size, header size; entries: reason, count at +8).
/// `None` if the call failed.
fn total_exits() -> Option<(u64, u64)> {
    let buf = core::ptr::addr_of_mut!(STATS) as u64;
    // EXIT_STATS writes at most 4096 bytes into STATS, which only this function uses (one
    // vCPU).
    let n = hv::call0(hv::EXIT_STATS | BULKHEAD_TAG, [buf, 4096, 0, 0]).ok()?;
    if !(24..=4096).contains(&n) {
        return None;
    }
    let count = read32(buf + 4) as u64;
    let (entry, header) = (read32(buf + 8) as u64, read32(buf + 12) as u64);
    let (mut all, mut timer) = (0, 0);
    for i in 0..count {
        let e = buf + header + i * entry;
        all += read64(e + 8);
        if read32(e) == EXIT_PREEMPTION_TIMER {
            timer += read64(e + 8);
        }
    }
    Some((all, timer))
}

/// One page holding this guest's PV areas: kvmclock at 0, steal time at 64, the PV EOI word
/// at 128, the wall clock at 192.
#[repr(C, align(4096))]
struct Areas([u8; 4096]);
static mut AREAS: Areas = Areas([0; 4096]);

/// The GPA of [`AREAS`] (identity-mapped: its address).
fn base() -> u64 {
    core::ptr::addr_of!(AREAS) as u64
}

fn read32(gpa: u64) -> u32 {
    // SAFETY: inside AREAS; the hypervisor writes it concurrently (volatile).
    unsafe { core::ptr::read_volatile(gpa as *const u32) }
}

fn read64(gpa: u64) -> u64 {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::read_volatile(gpa as *const u64) }
}

fn read8(gpa: u64) -> u8 {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::read_volatile(gpa as *const u8) }
}

fn wr(msr: u32, value: u64) -> Option<u8> {
    // SAFETY: the PV MSRs only make the hypervisor write into AREAS (or refuse).
    unsafe { wrmsr(msr, value) }.err().map(|f| f.vector)
}

/// kvmclock as Linux's `__pvclock_read_cycles` reads it: `None` if the record is not
/// stable within a few tries.
fn kvmclock_ns(clock: u64) -> Option<(u64, u8)> {
    for _ in 0..100 {
        let v1 = read32(clock);
        if v1 & 1 != 0 {
            continue;
        }
        let tsc_timestamp = read64(clock + 8);
        let system_time = read64(clock + 16);
        let mul = read32(clock + 24);
        let shift = read8(clock + 28) as i8;
        let flags = read8(clock + 29);
        let tsc = rdtsc();
        if read32(clock) != v1 {
            continue;
        }
        let mut delta = tsc.wrapping_sub(tsc_timestamp);
        if shift < 0 {
            delta >>= -shift;
        } else {
            delta <<= shift;
        }
        let ns = ((u128::from(delta) * u128::from(mul)) >> 32) as u64;
        return Some((system_time.wrapping_add(ns), flags));
    }
    None
}

/// 2020-01-01 00:00:00 UTC: a wall clock before it is not the machine's date.
const Y2020: u64 = 1_577_836_800;
/// The RTC counts whole seconds: wall clock + kvmclock may differ from it by one, two when a
/// second ticks between the two reads.
const WALL_TOLERANCE_SECS: u64 = 2;
const RTC_INDEX: u16 = 0x70;
const RTC_DATA: u16 = 0x71;
/// MC146818A register A's update-in-progress bit and register B's binary (DM) and 24-hour
/// bits; the IBM century byte at 0x32.
const RTC_A_UIP: u8 = 0x80;
const RTC_B_BINARY: u8 = 0x04;
const RTC_B_24H: u8 = 0x02;
const RTC_CENTURY: u8 = 0x32;

fn cmos(index: u8) -> u8 {
    outb(RTC_INDEX, index);
    inb(RTC_DATA)
}

/// The VM's RTC as Unix seconds: seconds, minutes, hours, day, month, year and century read
/// twice until equal and outside an update, decoded as register B says. `None` if the RTC
/// does not settle or shows a 12-hour clock (the hypervisor presets 24-hour).
fn rtc_unix_secs() -> Option<u64> {
    let read = || {
        while cmos(0x0a) & RTC_A_UIP != 0 {}
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, RTC_CENTURY].map(cmos)
    };
    let regs = (0..10).find_map(|_| {
        let a = read();
        (read() == a).then_some(a)
    })?;
    let b = cmos(0x0b);
    if b & RTC_B_24H == 0 {
        return None;
    }
    let dec = |v: u8| {
        if b & RTC_B_BINARY != 0 {
            u64::from(v)
        } else {
            u64::from(v >> 4) * 10 + u64::from(v & 0x0f)
        }
    };
    let [s, m, h, day, month, year, century] = regs.map(dec);
    let century = if century == 0 { 20 } else { century };
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let (y, mo) = if month <= 2 {
        (century * 100 + year - 1, month + 9)
    } else {
        (century * 100 + year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

fn main(ram_size: u64, _vm_index: u64) -> ! {
    trap::init();
    report::start("kvm-pv");
    let sig = cpuid(0x4000_0100, 0);
    let kvm = sig.ebx == u32::from_le_bytes(*b"KVMK")
        && sig.ecx == u32::from_le_bytes(*b"VMKV")
        && sig.edx == u32::from_le_bytes(*b"M\0\0\0");
    if !kvm {
        absent();
    }
    let features = cpuid(0x4000_0101, 0).eax;
    // CLOCKSOURCE2 (3), STEAL_TIME (5), PV_EOI (6), POLL_CONTROL (12), STABLE_BIT (24).
    let wanted = (1 << 3) | (1 << 5) | (1 << 6) | (1 << 12) | (1 << 24);
    if sig.eax >= 0x4000_0101 && features & wanted == wanted {
        pass("kvm-leaves");
    } else {
        fail(
            "kvm-leaves",
            format_args!("max {:#x} features {features:#x}", sig.eax),
        );
    }
    let (clock, steal, eoi, wall) = (base(), base() + 64, base() + 128, base() + 192);

    // A valid clock first, so the overlap cases have something to overlap.
    if wr(MSR_KVM_SYSTEM_TIME_NEW, clock | ENABLE).is_some() {
        fail(
            "hostile-msrs-gp",
            format_args!("the valid kvmclock was refused"),
        );
    }
    let cases: [(u32, u64); HOSTILE as usize] = [
        // Outside RAM.
        (MSR_KVM_SYSTEM_TIME_NEW, ram_size | ENABLE),
        (MSR_KVM_STEAL_TIME, ram_size | ENABLE),
        (MSR_KVM_PV_EOI_EN, (ram_size + 4) | ENABLE),
        (MSR_KVM_WALL_CLOCK_NEW, ram_size),
        // MMIO: the local APIC and the IOAPIC.
        (MSR_KVM_SYSTEM_TIME_NEW, LAPIC | ENABLE),
        (MSR_KVM_STEAL_TIME, IOAPIC | ENABLE),
        (MSR_KVM_PV_EOI_EN, (LAPIC + 0xb0) | ENABLE),
        // Unaligned (kvmclock 32, steal time 64) and reserved bits (steal 5:1, PV EOI 1).
        (MSR_KVM_SYSTEM_TIME_NEW, (steal + 8) | ENABLE),
        (MSR_KVM_STEAL_TIME, (steal + 32) | ENABLE),
        (MSR_KVM_STEAL_TIME, steal | 0b10 | ENABLE),
        (MSR_KVM_PV_EOI_EN, eoi | 0b10 | ENABLE),
        // On top of the kvmclock record.
        (MSR_KVM_STEAL_TIME, clock | ENABLE),
        (MSR_KVM_PV_EOI_EN, (clock + 4) | ENABLE),
        (MSR_KVM_WALL_CLOCK_NEW, clock + 16),
    ];
    let mut refused = 0;
    for (i, &(msr, value)) in cases.iter().enumerate() {
        match wr(msr, value) {
            Some(GP) => refused += 1,
            other => fail(
                "hostile-msrs-gp",
                format_args!("case {i}: WRMSR {msr:#x} = {value:#x} raised {other:?}"),
            ),
        }
    }
    let unchanged = rdmsr(MSR_KVM_SYSTEM_TIME_NEW) == Ok(clock | ENABLE)
        && rdmsr(MSR_KVM_STEAL_TIME) == Ok(0)
        && rdmsr(MSR_KVM_PV_EOI_EN) == Ok(0);
    if refused == HOSTILE && unchanged {
        report::say(format_args!("hostile-msrs refused={refused}"));
        pass("hostile-msrs-gp");
    } else {
        fail(
            "hostile-msrs-gp",
            format_args!("refused {refused} of {HOSTILE}, MSRs unchanged {unchanged}"),
        );
    }

    // The record was written at the entry after the WRMSR.
    match (kvmclock_ns(clock), read32(clock)) {
        (Some((t1, flags)), version) if version != 0 && flags & 1 != 0 => {
            let mut spin = 0u64;
            for i in 0..10_000u64 {
                spin = spin.wrapping_add(i);
                core::hint::black_box(spin);
            }
            match kvmclock_ns(clock) {
                Some((t2, _)) if t2 > t1 => {
                    report::say(format_args!("kvmclock t1={t1} t2={t2} version={version}"));
                    pass("kvmclock-monotonic");
                }
                other => fail("kvmclock-monotonic", format_args!("{t1} then {other:?}")),
            }
        }
        (r, version) => fail(
            "kvmclock-monotonic",
            format_args!("record {r:?} version {version}"),
        ),
    }

    bench(clock);

    let placed = wr(MSR_KVM_STEAL_TIME, steal | ENABLE).is_none()
        && wr(MSR_KVM_PV_EOI_EN, eoi | ENABLE).is_none();
    let version = read32(steal + 8);
    if placed && version != 0 && version & 1 == 0 && rdmsr(MSR_KVM_STEAL_TIME) == Ok(steal | 1) {
        pass("steal-time-placed");
    } else {
        fail(
            "steal-time-placed",
            format_args!("placed {placed} version {version}"),
        );
    }

    let wall_ok = wr(MSR_KVM_WALL_CLOCK_NEW, wall).is_none();
    // The wall clock is the Unix time at kvmclock 0 (Linux's `pvclock_read_wallclock`): the
    // VM's RTC starts at the machine's date, so the wall clock plus kvmclock now is what the
    // RTC reads now, to within the RTC's one-second resolution.
    let (wv, sec, nsec) = (read32(wall), read32(wall + 4), read32(wall + 8));
    let now_ns = kvmclock_ns(clock).map(|(ns, _)| ns);
    let rtc = rtc_unix_secs();
    let agrees = match (now_ns, rtc) {
        (Some(ns), Some(rtc)) => {
            let pv = u64::from(sec) + (u64::from(nsec) + ns) / 1_000_000_000;
            pv.abs_diff(rtc) <= WALL_TOLERANCE_SECS
        }
        _ => false,
    };
    if wall_ok
        && wv != 0
        && wv & 1 == 0
        && u64::from(sec) >= Y2020
        && nsec < 1_000_000_000
        && agrees
    {
        pass("wall-clock-written");
    } else {
        fail(
            "wall-clock-written",
            format_args!("version {wv} sec {sec} nsec {nsec} kvmclock {now_ns:?} rtc {rtc:?}"),
        );
    }

    let poll = rdmsr(MSR_KVM_POLL_CONTROL) == Ok(1)
        && wr(MSR_KVM_POLL_CONTROL, 0).is_none()
        && rdmsr(MSR_KVM_POLL_CONTROL) == Ok(0)
        && wr(MSR_KVM_POLL_CONTROL, 2) == Some(GP);
    if poll {
        pass("poll-control");
    } else {
        fail(
            "poll-control",
            format_args!("reset 1, store 0, #GP on bit 1"),
        );
    }
    report::done()
}

/// [`BENCH_READS`] kvmclock reads bracketed by EXIT_STATS: the exits between the two calls
/// less the first call's own VMCALL exit (counted after it returned).
fn bench(clock: u64) {
    let Some(before) = total_exits() else {
        fail("bench", format_args!("EXIT_STATS failed"));
        return;
    };
    let start = rdtsc();
    let mut last = 0;
    for _ in 0..BENCH_READS {
        if let Some((t, _)) = kvmclock_ns(clock) {
            last = core::hint::black_box(t);
        }
    }
    let ticks = rdtsc() - start;
    let Some(after) = total_exits() else {
        fail("bench", format_args!("EXIT_STATS failed"));
        return;
    };
    let exits = after.0.saturating_sub(before.0).saturating_sub(1);
    let timer = after.1.saturating_sub(before.1);
    report::say(format_args!(
        "BENCH kvmclock reads={BENCH_READS} exits={exits} timer-exits={timer} ticks={ticks} last={last}"
    ));
}

/// No KVM interface: its leaves read 0 and its MSRs do not exist.
fn absent() -> ! {
    let leaves = cpuid(0x4000_0100, 0).eax == 0 && cpuid(0x4000_0101, 0).eax == 0;
    let msrs = [
        MSR_KVM_WALL_CLOCK_NEW,
        MSR_KVM_SYSTEM_TIME_NEW,
        MSR_KVM_STEAL_TIME,
        MSR_KVM_PV_EOI_EN,
        MSR_KVM_POLL_CONTROL,
    ]
    .iter()
    .all(|&m| wr(m, base() | ENABLE) == Some(GP) && rdmsr(m).is_err());
    if leaves && msrs {
        pass("kvm-absent");
    } else {
        fail(
            "kvm-absent",
            format_args!("leaves {leaves} msrs #GP {msrs}"),
        );
    }
    report::done()
}
