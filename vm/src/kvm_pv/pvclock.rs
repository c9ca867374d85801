//! kvmclock's shared structures (Linux `pvclock-abi.h`) and arithmetic.
//!
//! The guest computes `system_time + pvclock_scale_delta(tsc - tsc_timestamp, mul, shift)`
//! where `pvclock_scale_delta` shifts the delta left by `shift` (right if negative) and keeps
//! bits 95:32 of the 96-bit product with `mul` ([`scale_delta`]). [`Scale::from_tsc_hz`]
//! picks `mul`/`shift` so that this never runs faster than real time (both the shift and the
//! multiplier round down) and [`Clock`] computes `system_time` exactly, so guest time is
//! monotonic across the hypervisor's updates.

/// Nanoseconds per second: kvmclock counts nanoseconds.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// `sizeof(struct pvclock_vcpu_time_info)`.
pub const VCPU_TIME_INFO_SIZE: usize = 32;
/// Offset of `u32 version`: odd while the hypervisor updates the structure.
pub const OFF_VERSION: usize = 0;
/// Offset of `u64 tsc_timestamp`: the guest TSC the other fields were computed at.
pub const OFF_TSC_TIMESTAMP: usize = 8;
/// Offset of `u64 system_time`: nanoseconds at `tsc_timestamp`.
pub const OFF_SYSTEM_TIME: usize = 16;
/// Offset of `u32 tsc_to_system_mul`.
pub const OFF_TSC_TO_SYSTEM_MUL: usize = 24;
/// Offset of `s8 tsc_shift`.
pub const OFF_TSC_SHIFT: usize = 28;
/// Offset of `u8 flags`.
pub const OFF_FLAGS: usize = 29;

/// `PVCLOCK_TSC_STABLE_BIT`: the TSC is synchronised across vCPUs (lets Linux read kvmclock
/// in the vDSO without a system call).
pub const FLAG_TSC_STABLE: u8 = 1 << 0;
/// `PVCLOCK_GUEST_STOPPED`: the guest was paused (Bulkhead never sets it).
pub const FLAG_GUEST_STOPPED: u8 = 1 << 1;

/// `sizeof(struct pvclock_wall_clock)` (packed: `u32 version, u32 sec, u32 nsec`).
pub const WALL_CLOCK_SIZE: usize = 12;

/// `tsc_to_system_mul` and `tsc_shift` for one TSC rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// 32.32 fixed-point multiplier (the upper 32 bits are always 0).
    pub mul: u32,
    /// Power of two applied to the TSC delta before the multiplication.
    pub shift: i8,
}

impl Scale {
    /// The scale for a TSC of `tsc_hz` (> 0): the smallest `shift` with
    /// `tsc_hz · 2^shift > 10^9`, so `mul = ⌊10^9 · 2^32 / (tsc_hz · 2^shift)⌋` is in
    /// `[2^31, 2^32)` and keeps 31 significant bits. `None` for 0 Hz.
    pub fn from_tsc_hz(tsc_hz: u64) -> Option<Scale> {
        if tsc_hz == 0 {
            return None;
        }
        let ns = u128::from(NSEC_PER_SEC);
        let mut shift: i32 = 0;
        // scaled = tsc_hz · 2^shift as a fraction num / den.
        loop {
            let (num, den) = if shift >= 0 {
                (u128::from(tsc_hz) << shift, 1u128)
            } else {
                (u128::from(tsc_hz), 1u128 << -shift)
            };
            let above = num > ns * den;
            let below_twice = num <= 2 * ns * den;
            if above && below_twice {
                let mul = (ns << 32) * den / num;
                return Some(Scale {
                    mul: mul as u32,
                    shift: shift as i8,
                });
            }
            shift += if above { -1 } else { 1 };
        }
    }
}

/// Linux's `pvclock_scale_delta(delta, mul_frac, shift)`: nanoseconds in `delta` TSC ticks.
pub fn scale_delta(delta: u64, scale: Scale) -> u64 {
    let shifted = if scale.shift < 0 {
        delta >> u32::from(scale.shift.unsigned_abs())
    } else {
        delta << u32::from(scale.shift.unsigned_abs())
    };
    ((u128::from(shifted) * u128::from(scale.mul)) >> 32) as u64
}

/// One `pvclock_vcpu_time_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Even when consistent.
    pub version: u32,
    /// Guest TSC at which `system_time` holds.
    pub tsc_timestamp: u64,
    /// Nanoseconds since the VM's clock epoch.
    pub system_time: u64,
    /// The scale.
    pub scale: Scale,
    /// `PVCLOCK_*` flags.
    pub flags: u8,
}

impl VcpuTimeInfo {
    /// The 32 bytes the guest reads.
    pub fn to_bytes(&self) -> [u8; VCPU_TIME_INFO_SIZE] {
        let mut b = [0u8; VCPU_TIME_INFO_SIZE];
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&self.version.to_le_bytes());
        b[OFF_TSC_TIMESTAMP..OFF_TSC_TIMESTAMP + 8]
            .copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        b[OFF_SYSTEM_TIME..OFF_SYSTEM_TIME + 8].copy_from_slice(&self.system_time.to_le_bytes());
        b[OFF_TSC_TO_SYSTEM_MUL..OFF_TSC_TO_SYSTEM_MUL + 4]
            .copy_from_slice(&self.scale.mul.to_le_bytes());
        b[OFF_TSC_SHIFT] = self.scale.shift as u8;
        b[OFF_FLAGS] = self.flags;
        b
    }

    /// What the guest computes at guest TSC `tsc` (Linux `__pvclock_read_cycles`).
    pub fn read(&self, tsc: u64) -> u64 {
        self.system_time.wrapping_add(scale_delta(
            tsc.wrapping_sub(self.tsc_timestamp),
            self.scale,
        ))
    }
}

/// The VM's kvmclock: nanoseconds since an epoch host TSC, exact to the nanosecond
/// (128-bit), and the per-vCPU record built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// TSC rate in Hz (> 0).
    pub tsc_hz: u64,
    /// Host TSC at which the VM's clock reads 0.
    pub epoch_tsc: u64,
    /// The scale of [`Clock::tsc_hz`].
    pub scale: Scale,
}

impl Clock {
    /// A clock for a TSC of `tsc_hz` starting at host TSC `epoch_tsc`; `None` for 0 Hz.
    pub fn new(tsc_hz: u64, epoch_tsc: u64) -> Option<Clock> {
        Some(Clock {
            tsc_hz,
            epoch_tsc,
            scale: Scale::from_tsc_hz(tsc_hz)?,
        })
    }

    /// ⌊(host_tsc − epoch) · 10^9 / tsc_hz⌋ (0 before the epoch). The difference is taken
    /// modulo 2^64 and read as signed (before the epoch when negative), as the guest reads
    /// its TSC deltas: a snapshot restore on a host whose TSC is younger than the VM's clock
    /// moves the epoch below TSC 0 (it wraps, `VmPv::load_state`) and the clock still
    /// counts on from where it was.
    pub fn ns_at(&self, host_tsc: u64) -> u64 {
        let ticks = host_tsc.wrapping_sub(self.epoch_tsc);
        // Negative as an i64 (above i64::MAX as a u64): before the epoch.
        if i64::try_from(ticks).is_err() {
            return 0;
        }
        let ticks = u128::from(ticks);
        (ticks * u128::from(NSEC_PER_SEC) / u128::from(self.tsc_hz)) as u64
    }

    /// The record for a vCPU whose guest TSC is `host_tsc + tsc_offset`, taken at `host_tsc`,
    /// with `version` (the caller makes it even; [`begin_update`] gives the odd one before).
    pub fn time_info(&self, host_tsc: u64, tsc_offset: i64, version: u32) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version,
            tsc_timestamp: host_tsc.wrapping_add(tsc_offset as u64),
            system_time: self.ns_at(host_tsc),
            scale: self.scale,
            flags: FLAG_TSC_STABLE,
        }
    }
}

/// The two versions of one update: first write `odd` to `version`, then the fields, then
/// `even` (Linux's reader retries while the version is odd or changed).
pub fn begin_update(current: u32) -> (u32, u32) {
    let odd = current | 1;
    let even = odd.wrapping_add(1);
    (odd, even)
}

/// A `pvclock_wall_clock`: the wall-clock time at which kvmclock read 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// Even when consistent.
    pub version: u32,
    /// Seconds since 1970-01-01 00:00 UTC.
    pub sec: u32,
    /// Nanoseconds.
    pub nsec: u32,
}

impl WallClock {
    /// The wall clock of a VM whose kvmclock reads `clock_ns` at the instant the RTC reads
    /// `now_unix_ns`: the time of the clock's epoch.
    pub fn at_epoch(now_unix_ns: u64, clock_ns: u64, version: u32) -> WallClock {
        let boot = now_unix_ns.saturating_sub(clock_ns);
        WallClock {
            version,
            sec: (boot / NSEC_PER_SEC) as u32,
            nsec: (boot % NSEC_PER_SEC) as u32,
        }
    }

    /// The 12 bytes the guest reads.
    pub fn to_bytes(&self) -> [u8; WALL_CLOCK_SIZE] {
        let mut b = [0u8; WALL_CLOCK_SIZE];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..12].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }
}
