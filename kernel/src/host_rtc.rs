//! The machine's own real-time clock, read once at boot so that every VM's RTC (and kvm-clock
//! wall clock) starts at the real date instead of 1970: the MC146818-compatible CMOS clock
//! every PC has at ports 0x70/0x71, decoded by `vm::devices::rtc::RawTime` (host-tested).

use crate::arch;
use log::{info, warn};
use spin::Once;
use vm::devices::rtc::{RawTime, PORT_DATA, PORT_INDEX, REG_A, REG_B, REG_CENTURY};

/// Register A's update-in-progress bit (MC146818A datasheet, register A: UIP).
const REG_A_UIP: u8 = 0x80;
/// Index bit 7 disables NMI while the index is latched (the PC/AT convention); the hypervisor
/// keeps NMI enabled.
const INDEX_MASK: u8 = 0x7f;
/// Readings tried until two agree (an update can land between two register reads).
const ATTEMPTS: usize = 8;

/// The wall clock at boot: Unix seconds and the TSC when they held.
static BOOT_CLOCK: Once<(u64, u64)> = Once::new();

fn read_register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the PC's CMOS/RTC, owned by the hypervisor (no VM reaches
    // the host's ports); selecting a register and reading it changes no state but the index
    // latch, which only this module uses. NMI stays enabled (bit 7 clear).
    unsafe {
        arch::outb(PORT_INDEX, index & INDEX_MASK);
        arch::inb(PORT_DATA)
    }
}

/// One reading once no update is in progress (the update cycle takes under 2 ms; a clock that
/// never finishes one gives up after about a million polls).
fn read_once() -> RawTime {
    for _ in 0..1_000_000 {
        if read_register(REG_A) & REG_A_UIP == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    RawTime {
        second: read_register(0x00),
        minute: read_register(0x02),
        hour: read_register(0x04),
        day: read_register(0x07),
        month: read_register(0x08),
        year: read_register(0x09),
        reg_b: read_register(REG_B),
        century: read_register(REG_CENTURY),
    }
}

/// Reads the machine's clock (boot CPU, before any VM runs) and reports it; a clock that does
/// not read as a date leaves the VMs' clocks at the Unix epoch, with a warning.
pub fn init(tsc_hz: u64) {
    BOOT_CLOCK.call_once(|| {
        let mut last = read_once();
        for _ in 0..ATTEMPTS {
            let next = read_once();
            if next == last {
                break;
            }
            last = next;
        }
        let tsc = arch::rdtsc();
        match last.decode() {
            Ok(dt) => {
                let secs = dt.to_unix().max(0) as u64;
                info!(
                    "rtc: {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC (the VMs' clocks start here; tsc {} kHz)",
                    dt.year,
                    dt.month,
                    dt.day,
                    dt.hour,
                    dt.minute,
                    dt.second,
                    tsc_hz / 1000
                );
                (secs, tsc)
            }
            Err(e) => {
                warn!("rtc: {e}; the VMs' clocks start at 1970-01-01");
                (0, tsc)
            }
        }
    });
}

/// Unix seconds at TSC `now` by the clock read at boot (the epoch before [`init`]).
pub fn unix_secs_at(now: u64, tsc_hz: u64) -> u64 {
    let (secs, tsc) = BOOT_CLOCK.get().copied().unwrap_or((0, now));
    secs + now.saturating_sub(tsc) / tsc_hz.max(1)
}
