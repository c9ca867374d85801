//! The KVM paravirtual state of one VM: what its vCPUs wrote to the PV MSRs
//! (Documentation/virt/kvm/x86/msr.rst), the versions of the areas the hypervisor keeps up
//! to date, and the counters of the VM report. Pure bookkeeping: [`VmPv::wrmsr`] validates
//! and records a write, [`VmPv::clock_update`] / [`VmPv::steal_update`] say what to write
//! into guest memory and in which order; the kernel (kernel/src/vmm/kvm_pv.rs) does the
//! writes.
//!
//! kvmclock uses one anchor for the whole VM: every vCPU's `pvclock_vcpu_time_info` says
//! "system time 0 at guest TSC `epoch + tsc_offset`", so all vCPUs compute the same function
//! of the (synchronised) host TSC, exactly as KVM's master clock does. That keeps Linux's
//! timekeeping, which compares readings taken on different vCPUs without a `last_value`
//! guard once `PVCLOCK_TSC_STABLE_BIT` is set, monotonic across vCPUs and across a vCPU's
//! move to another physical CPU. The record is rewritten (with a new version) when the
//! guest places it, when the vCPU's TSC offset changes and when the vCPU runs on another
//! physical CPU.
//!
//! A VM snapshot (issue 18) carries this state through [`VmPv::save_state`] and
//! [`VmPv::load_state`]: the MSR values, the areas' versions and flags, each vCPU's steal
//! time and the kvmclock's epoch, moved by the restore's host-TSC shift so that the guest's
//! kvmclock continues from where it stood (the pause is invisible, as in the guest's TSC).

use super::msr::{self, Area, Placed, PvMsrError, PvWrite};
use super::pvclock::{self, Clock, WallClock};
use super::Enabled;
use crate::snapshot::codec::{Dec, Enc};
use alloc::vec::Vec;

/// One vCPU's PV MSRs and areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuPv {
    /// `MSR_KVM_SYSTEM_TIME_NEW` as written (RDMSR returns it).
    pub system_time_msr: u64,
    /// `MSR_KVM_STEAL_TIME` as written.
    pub steal_msr: u64,
    /// `MSR_KVM_PV_EOI_EN` as written.
    pub pv_eoi_msr: u64,
    /// `MSR_KVM_POLL_CONTROL` (reset value 1: host polling allowed).
    pub poll_control: u64,
    /// Version of the last `pvclock_vcpu_time_info` written (even).
    pub clock_version: u32,
    /// The record must be (re)written before the vCPU next runs.
    pub clock_stale: bool,
    /// Version of the last `kvm_steal_time` written (even).
    pub steal_version: u32,
    /// The steal-time area must be written before the vCPU next runs (just placed).
    pub steal_stale: bool,
    /// Nanoseconds stolen since steal time was last placed (the area's `steal`).
    pub steal_ns: u64,
    /// The hypervisor set `KVM_PV_EOI_BIT` in the guest's word for the interrupt in service.
    pub pv_eoi_pending: bool,
    /// What this vCPU turned on.
    pub enabled: Enabled,
}

impl Default for VcpuPv {
    fn default() -> Self {
        VcpuPv {
            system_time_msr: 0,
            steal_msr: 0,
            pv_eoi_msr: 0,
            poll_control: msr::POLL_CONTROL_HOST_POLL,
            clock_version: 0,
            clock_stale: false,
            steal_version: 0,
            steal_stale: false,
            steal_ns: 0,
            pv_eoi_pending: false,
            enabled: Enabled::default(),
        }
    }
}

fn enabled_gpa(value: u64, low_bits: u64) -> Option<u64> {
    (value & msr::KVM_MSR_ENABLED != 0).then_some(value & !low_bits)
}

impl VcpuPv {
    /// The GPA of this vCPU's `pvclock_vcpu_time_info`, if enabled.
    pub fn clock_gpa(&self) -> Option<u64> {
        enabled_gpa(self.system_time_msr, msr::KVM_MSR_ENABLED)
    }

    /// The GPA of this vCPU's `kvm_steal_time`, if enabled (bits 5:1 are reserved, so 0).
    pub fn steal_gpa(&self) -> Option<u64> {
        enabled_gpa(self.steal_msr, 0x3f)
    }

    /// The GPA of this vCPU's PV EOI word, if enabled (bit 1 reserved, so 0).
    pub fn pv_eoi_gpa(&self) -> Option<u64> {
        enabled_gpa(self.pv_eoi_msr, 0b11)
    }

    /// Whether the guest lets the host poll before halting this vCPU (`POLL_CONTROL` bit 0).
    pub fn host_poll_allowed(&self) -> bool {
        self.poll_control & msr::POLL_CONTROL_HOST_POLL != 0
    }
}

/// What the kernel does after a PV MSR write was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing (an area disabled, `POLL_CONTROL` stored).
    None,
    /// Write the wall clock ([`VmPv::wall_clock`]) at this GPA now.
    WallClock(u64),
    /// The vCPU's kvmclock or steal-time area was placed: written before its next entry.
    Placed,
}

/// One update of a versioned area: write `odd` to `version`, then the fields, then `even`
/// (the guest retries while the version is odd or changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update<const N: usize> {
    /// The area's GPA.
    pub gpa: u64,
    /// The version written first.
    pub odd: u32,
    /// The whole area with the final (even) version.
    pub bytes: [u8; N],
}

/// The KVM PV state of one VM.
#[derive(Debug, Clone)]
pub struct VmPv {
    /// The VM's kvmclock: nanoseconds since the VM's epoch TSC.
    pub clock: Clock,
    /// `MSR_KVM_WALL_CLOCK_NEW` as last written (`None` until then).
    pub wall_clock_gpa: Option<u64>,
    /// Version of the last wall clock written.
    pub wall_version: u32,
    /// Each vCPU's state, by vCPU index.
    pub vcpus: Vec<VcpuPv>,
    /// Nanoseconds of steal time reported to the guest, all vCPUs.
    pub stolen_ns: u64,
    /// EOIs the guest did by clearing the PV EOI bit instead of writing the EOI register.
    pub pv_eois: u64,
    /// Writes to PV MSRs refused with #GP.
    pub refused: u64,
}

impl VmPv {
    /// The state of a VM with `vcpus` vCPUs and kvmclock `clock`.
    pub fn new(vcpus: usize, clock: Clock) -> Self {
        VmPv {
            clock,
            wall_clock_gpa: None,
            wall_version: 0,
            vcpus: alloc::vec![VcpuPv::default(); vcpus],
            stolen_ns: 0,
            pv_eois: 0,
            refused: 0,
        }
    }

    /// Every PV area placed in the VM.
    pub fn placed(&self) -> impl Iterator<Item = Placed> + '_ {
        let wall = self.wall_clock_gpa.map(|gpa| Placed {
            area: Area::WallClock,
            gpa,
            vcpu: None,
        });
        let per_vcpu = self.vcpus.iter().enumerate().flat_map(|(i, v)| {
            let vcpu = Some(i as u32);
            [
                v.clock_gpa().map(|gpa| (Area::SystemTime, gpa)),
                v.steal_gpa().map(|gpa| (Area::StealTime, gpa)),
                v.pv_eoi_gpa().map(|gpa| (Area::PvEoi, gpa)),
            ]
            .into_iter()
            .flatten()
            .map(move |(area, gpa)| Placed { area, gpa, vcpu })
        });
        wall.into_iter().chain(per_vcpu)
    }

    /// RDMSR of a PV MSR by `vcpu`: the value written (`None`: not a PV MSR).
    pub fn rdmsr(&self, vcpu: usize, msr: u32) -> Option<u64> {
        let v = self.vcpus.get(vcpu)?;
        Some(match msr {
            msr::MSR_KVM_WALL_CLOCK_NEW => self.wall_clock_gpa.unwrap_or(0),
            msr::MSR_KVM_SYSTEM_TIME_NEW => v.system_time_msr,
            msr::MSR_KVM_STEAL_TIME => v.steal_msr,
            msr::MSR_KVM_PV_EOI_EN => v.pv_eoi_msr,
            msr::MSR_KVM_POLL_CONTROL => v.poll_control,
            _ => return None,
        })
    }

    /// WRMSR of a PV MSR by `vcpu`: validated against the VM's RAM (`is_ram(gpa, len)`: all
    /// RAM, no MMIO) and its other areas, then recorded. `None`: not a PV MSR; `Err`: the
    /// guest gets #GP and nothing changed.
    pub fn wrmsr(
        &mut self,
        vcpu: usize,
        msr: u32,
        value: u64,
        is_ram: impl Fn(u64, u64) -> bool,
    ) -> Option<Result<Effect, PvMsrError>> {
        let write = msr::decode_write(msr, value)?;
        if vcpu >= self.vcpus.len() {
            return None;
        }
        let result = write.and_then(|write| self.record(vcpu, value, write, is_ram));
        if result.is_err() {
            self.refused += 1;
        }
        Some(result)
    }

    fn record(
        &mut self,
        vcpu: usize,
        value: u64,
        write: PvWrite,
        is_ram: impl Fn(u64, u64) -> bool,
    ) -> Result<Effect, PvMsrError> {
        if let PvWrite::Enable { area, gpa } = write {
            let owner = (area != Area::WallClock).then_some(vcpu as u32);
            msr::validate(area, gpa, owner, is_ram, self.placed())?;
        }
        let v = &mut self.vcpus[vcpu];
        Ok(match write {
            PvWrite::Enable {
                area: Area::WallClock,
                gpa,
            } => {
                self.wall_clock_gpa = Some(gpa);
                v.enabled.wall_clock = true;
                Effect::WallClock(gpa)
            }
            PvWrite::Enable {
                area: Area::SystemTime,
                ..
            } => {
                v.system_time_msr = value;
                v.clock_stale = true;
                v.enabled.clock = true;
                Effect::Placed
            }
            PvWrite::Enable {
                area: Area::StealTime,
                ..
            } => {
                v.steal_msr = value;
                v.steal_ns = 0;
                v.steal_stale = true;
                v.enabled.steal = true;
                Effect::Placed
            }
            PvWrite::Enable {
                area: Area::PvEoi, ..
            } => {
                v.pv_eoi_msr = value;
                v.pv_eoi_pending = false;
                v.enabled.pv_eoi = true;
                Effect::None
            }
            PvWrite::Disable(area) => {
                match area {
                    Area::SystemTime => v.system_time_msr = value,
                    Area::StealTime => {
                        v.steal_msr = value;
                        v.steal_stale = false;
                    }
                    Area::PvEoi => {
                        v.pv_eoi_msr = value;
                        v.pv_eoi_pending = false;
                    }
                    Area::WallClock => {}
                }
                Effect::None
            }
            PvWrite::PollControl(bits) => {
                v.poll_control = bits;
                v.enabled.poll_control = true;
                Effect::None
            }
        })
    }

    /// The wall clock to write now, the RTC reading `now_unix_ns` at host TSC `host_tsc`:
    /// the time at which the VM's kvmclock read 0 (Linux adds kvmclock to it).
    pub fn wall_clock(
        &mut self,
        gpa: u64,
        now_unix_ns: u64,
        host_tsc: u64,
    ) -> Update<{ pvclock::WALL_CLOCK_SIZE }> {
        let (odd, even) = pvclock::begin_update(self.wall_version);
        self.wall_version = even;
        let wc = WallClock::at_epoch(now_unix_ns, self.clock.ns_at(host_tsc), even);
        Update {
            gpa,
            odd,
            bytes: wc.to_bytes(),
        }
    }

    /// Marks `vcpu`'s kvmclock record for rewriting (its TSC offset changed, or it runs on
    /// another physical CPU).
    pub fn clock_changed(&mut self, vcpu: usize) {
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.clock_stale = v.clock_gpa().is_some();
        }
    }

    /// The kvmclock record to write before `vcpu` enters, if it is enabled and stale, for a
    /// guest TSC of host TSC + `tsc_offset` (see the module comment for the anchor).
    pub fn clock_update(
        &mut self,
        vcpu: usize,
        tsc_offset: u64,
    ) -> Option<Update<{ pvclock::VCPU_TIME_INFO_SIZE }>> {
        let clock = self.clock;
        let v = self.vcpus.get_mut(vcpu)?;
        if !v.clock_stale {
            return None;
        }
        v.clock_stale = false;
        let gpa = v.clock_gpa()?;
        let (odd, even) = pvclock::begin_update(v.clock_version);
        v.clock_version = even;
        let info = clock.time_info(clock.epoch_tsc, tsc_offset as i64, even);
        Some(Update {
            gpa,
            odd,
            bytes: info.to_bytes(),
        })
    }

    /// The steal-time update before `vcpu` enters after it waited `waited_ns` runnable (0:
    /// it did not, and the area is written only if just placed). The kernel clears
    /// `preempted` itself, atomically, before writing this.
    pub fn steal_update(
        &mut self,
        vcpu: usize,
        waited_ns: u64,
    ) -> Option<Update<{ super::steal_time::SIZE }>> {
        let v = self.vcpus.get_mut(vcpu)?;
        let gpa = v.steal_gpa()?;
        if waited_ns == 0 && !v.steal_stale {
            return None;
        }
        v.steal_stale = false;
        v.steal_ns = v.steal_ns.saturating_add(waited_ns);
        self.stolen_ns = self.stolen_ns.saturating_add(waited_ns);
        let (odd, even) = pvclock::begin_update(v.steal_version);
        v.steal_version = even;
        let mut bytes = [0u8; super::steal_time::SIZE];
        bytes[super::steal_time::OFF_STEAL..super::steal_time::OFF_STEAL + 8]
            .copy_from_slice(&super::steal_time::steal_bytes(v.steal_ns));
        bytes[super::steal_time::OFF_VERSION..super::steal_time::OFF_VERSION + 4]
            .copy_from_slice(&even.to_le_bytes());
        Some(Update { gpa, odd, bytes })
    }

    /// Everything the vCPUs enabled, merged.
    pub fn enabled(&self) -> Enabled {
        let mut e = Enabled::default();
        for v in &self.vcpus {
            e.merge(v.enabled);
        }
        e
    }
}

/// The input ended before the last field.
const SHORT: &str = "the section ends early";

/// [`Enabled`]'s flags in their snapshot order: bit `n` of the saved word is flag `n`.
fn enabled_flags(e: &mut Enabled) -> [&mut bool; ENABLED_FLAGS] {
    [
        &mut e.clock,
        &mut e.wall_clock,
        &mut e.steal,
        &mut e.pv_eoi,
        &mut e.poll_control,
        &mut e.kick,
        &mut e.send_ipi,
        &mut e.sched_yield,
        &mut e.tlb_flush,
    ]
}

/// How many flags [`Enabled`] has.
const ENABLED_FLAGS: usize = 9;

fn enabled_bits(mut e: Enabled) -> u16 {
    enabled_flags(&mut e)
        .into_iter()
        .enumerate()
        .fold(0, |bits, (n, on)| bits | (u16::from(*on) << n))
}

fn enabled_of_bits(bits: u16) -> Option<Enabled> {
    if u32::from(bits) >> ENABLED_FLAGS != 0 {
        return None;
    }
    let mut e = Enabled::default();
    for (n, on) in enabled_flags(&mut e).into_iter().enumerate() {
        *on = bits & (1 << n) != 0;
    }
    Some(e)
}

/// A saved boolean: 0 or 1, else `bad`.
fn flag(d: &mut Dec, bad: &'static str) -> Result<bool, &'static str> {
    match d.u8().ok_or(SHORT)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad),
    }
}

/// A saved area version: even, as the hypervisor leaves it after every update
/// (Documentation/virt/kvm/x86/msr.rst: "an odd version indicates an in-progress update").
fn version(d: &mut Dec, odd: &'static str) -> Result<u32, &'static str> {
    let v = d.u32().ok_or(SHORT)?;
    if v % 2 != 0 {
        return Err(odd);
    }
    Ok(v)
}

/// A saved PV MSR value: one [`msr::decode_write`] accepts (the reserved bits of
/// Documentation/virt/kvm/x86/msr.rst clear), else `reserved`.
fn msr_value(d: &mut Dec, msr: u32, reserved: &'static str) -> Result<u64, &'static str> {
    let value = d.u64().ok_or(SHORT)?;
    match msr::decode_write(msr, value) {
        Some(Ok(_)) => Ok(value),
        _ => Err(reserved),
    }
}

/// The refusal of a saved area [`msr::validate`] rejects (RAM is not checked there).
fn placement_error(error: PvMsrError) -> &'static str {
    match error {
        PvMsrError::Unaligned {
            area: Area::WallClock,
            ..
        } => "wall clock address not 4-byte aligned",
        PvMsrError::Unaligned {
            area: Area::SystemTime,
            ..
        } => "kvmclock address not 32-byte aligned",
        // Implied by the reserved bits of their MSRs, checked before.
        PvMsrError::Unaligned { .. } => "PV area address not aligned",
        PvMsrError::NotRam {
            area: Area::WallClock,
            ..
        } => "wall clock crosses a page or the end of the address space",
        PvMsrError::NotRam { .. } => "PV area at the end of the address space",
        // The wall clock comes first and is never the later of two.
        PvMsrError::Overlaps {
            area: Area::WallClock | Area::SystemTime,
            ..
        } => "kvmclock area overlaps another PV area",
        PvMsrError::Overlaps {
            area: Area::StealTime,
            ..
        } => "steal-time area overlaps another PV area",
        PvMsrError::Overlaps {
            area: Area::PvEoi, ..
        } => "PV EOI word overlaps another PV area",
        PvMsrError::Reserved { .. } => "PV MSR with reserved bits set",
    }
}

impl VcpuPv {
    fn save_state(&self, e: &mut Enc) {
        e.u64(self.system_time_msr)
            .u64(self.steal_msr)
            .u64(self.pv_eoi_msr)
            .u64(self.poll_control)
            .u32(self.clock_version)
            .u8(u8::from(self.clock_stale))
            .u32(self.steal_version)
            .u8(u8::from(self.steal_stale))
            .u64(self.steal_ns)
            .u8(u8::from(self.pv_eoi_pending))
            .u16(enabled_bits(self.enabled));
    }

    fn load_state(d: &mut Dec) -> Result<VcpuPv, &'static str> {
        // The MSR values as the handlers record them (msr::decode_write: the layouts of
        // Documentation/virt/kvm/x86/msr.rst); the addresses are checked with the VM's other
        // areas in VmPv::load_state.
        let system_time_msr = msr_value(
            d,
            msr::MSR_KVM_SYSTEM_TIME_NEW,
            "kvmclock MSR with reserved bits set",
        )?;
        let steal_msr = msr_value(
            d,
            msr::MSR_KVM_STEAL_TIME,
            "steal-time MSR with reserved bits set",
        )?;
        let pv_eoi_msr = msr_value(
            d,
            msr::MSR_KVM_PV_EOI_EN,
            "PV EOI MSR with reserved bits set",
        )?;
        let poll_control = msr_value(
            d,
            msr::MSR_KVM_POLL_CONTROL,
            "poll-control MSR with reserved bits set",
        )?;
        let clock_version = version(d, "kvmclock version odd")?;
        let clock_stale = flag(d, "kvmclock stale flag neither 0 nor 1")?;
        let steal_version = version(d, "steal-time version odd")?;
        let steal_stale = flag(d, "steal-time stale flag neither 0 nor 1")?;
        let steal_ns = d.u64().ok_or(SHORT)?;
        let pv_eoi_pending = flag(d, "PV EOI pending flag neither 0 nor 1")?;
        let enabled = enabled_of_bits(d.u16().ok_or(SHORT)?)
            .ok_or("enabled-feature flags with unknown bits set")?;
        let v = VcpuPv {
            system_time_msr,
            steal_msr,
            pv_eoi_msr,
            poll_control,
            clock_version,
            clock_stale,
            steal_version,
            steal_stale,
            steal_ns,
            pv_eoi_pending,
            enabled,
        };
        // A disabled area is never stale (record: disabling clears it) and a PV EOI bit is
        // only offered in an enabled word (kernel/src/vmm/kvm_pv.rs).
        if v.steal_stale && v.steal_gpa().is_none() {
            return Err("steal time stale while disabled");
        }
        if v.pv_eoi_pending && v.pv_eoi_gpa().is_none() {
            return Err("PV EOI pending while disabled");
        }
        Ok(v)
    }
}

impl VmPv {
    /// Appends the VM's PV state for a snapshot: the kvmclock's TSC rate and epoch (host
    /// TSC), the wall clock's GPA (set flag, GPA) and version, the vCPU count and, per vCPU,
    /// its MSRs (system time, steal time, PV EOI, poll control), the kvmclock and steal-time
    /// versions and stale flags, the steal time so far, the PV EOI offer and what it enabled.
    /// The VM-report counters (`stolen_ns`, `pv_eois`, `refused`) are host bookkeeping and
    /// not saved.
    pub fn save_state(&self, e: &mut Enc) {
        e.u64(self.clock.tsc_hz)
            .u64(self.clock.epoch_tsc)
            .u8(u8::from(self.wall_clock_gpa.is_some()))
            .u64(self.wall_clock_gpa.unwrap_or(0))
            .u32(self.wall_version)
            .u32(self.vcpus.len() as u32);
        for v in &self.vcpus {
            v.save_state(e);
        }
    }

    /// Reads what [`Self::save_state`] wrote into this state, which must be a fresh one
    /// ([`VmPv::new`]) of a VM with as many vCPUs and a kvmclock of the same TSC rate (the
    /// guest's TSC rate: the restoring kernel builds it from the snapshot's), and leaves `d`
    /// after the last field (the caller checks [`Dec::done`]). `shift` (the restoring host's
    /// TSC minus the snapshot's, modulo 2^64) moves the kvmclock's epoch, so that the clock
    /// reads at the restoring host's TSC `t + shift` what it read at the snapshot's `t`: with
    /// the guest TSC kept continuous through the TSC offset (offset − shift), every
    /// `pvclock_vcpu_time_info` [`Self::clock_update`] writes after the restore has the
    /// same `tsc_timestamp` and `system_time` as before it, so the records restored with guest
    /// RAM stay valid. The counters keep this state's values.
    ///
    /// The MSR values, versions and flags are checked as the MSR handlers would have left
    /// them, and the areas for alignment, page crossing and overlap (not for being RAM: the
    /// model does not know the memory map; [`Self::placed`] lists them for the kernel). On an
    /// error, a short phrase naming the first bad field, `self` is unchanged.
    ///
    /// After a restore the kernel calls [`Self::clock_changed`] for every vCPU (as for any
    /// change of its TSC offset), so the first entry rewrites each enabled kvmclock record
    /// through [`Self::clock_update`] with a new version.
    pub fn load_state(&mut self, d: &mut Dec, shift: u64) -> Result<(), &'static str> {
        if d.u64().ok_or(SHORT)? != self.clock.tsc_hz {
            return Err("kvmclock TSC rate differs from the restoring VM's");
        }
        let clock = Clock {
            epoch_tsc: d.u64().ok_or(SHORT)?.wrapping_add(shift),
            ..self.clock
        };
        let wall_set = flag(d, "wall clock flag neither 0 nor 1")?;
        let wall_gpa = d.u64().ok_or(SHORT)?;
        if !wall_set && wall_gpa != 0 {
            return Err("an unset wall clock with an address");
        }
        let wall_version = version(d, "wall clock version odd")?;
        if d.u32().ok_or(SHORT)? as usize != self.vcpus.len() {
            return Err("vCPU count differs from the restoring VM's");
        }
        let vcpus = (0..self.vcpus.len())
            .map(|_| VcpuPv::load_state(d))
            .collect::<Result<Vec<_>, _>>()?;
        let restored = VmPv {
            clock,
            wall_clock_gpa: wall_set.then_some(wall_gpa),
            wall_version,
            vcpus,
            stolen_ns: self.stolen_ns,
            pv_eois: self.pv_eois,
            refused: self.refused,
        };
        // The checks of the MSR handlers (msr::validate) but RAM, each area against the ones
        // before it in the saved order, so an overlap names the later one.
        for (n, p) in restored.placed().enumerate() {
            msr::validate(
                p.area,
                p.gpa,
                p.vcpu,
                |_, _| true,
                restored.placed().take(n),
            )
            .map_err(placement_error)?;
        }
        *self = restored;
        Ok(())
    }
}

/// Whether the guest did the EOI of a PV-EOI interrupt: it clears [`msr::KVM_PV_EOI_BIT`]
/// instead of writing the EOI register (Linux `kvm_guest_apic_eoi_write`).
pub fn pv_eoi_done(word: u32) -> bool {
    word & msr::KVM_PV_EOI_BIT == 0
}

/// Whether an interrupt in service may be ended by the guest through the PV EOI bit: no
/// other interrupt in service or requested (the guest's EOI would otherwise end another
/// one first, SDM Vol. 3A §11.8.5), and nobody else needs to see its EOI (not
/// level-triggered, so no IOAPIC remote-IRR to clear, SDM Vol. 3A §11.8.5 and 82093AA
/// §3.2.4).
pub fn pv_eoi_allowed(in_service: usize, requested: bool, level_triggered: bool) -> bool {
    in_service == 1 && !requested && !level_triggered
}
