//! VM snapshots (issue 18), the hardware-independent part: the versioned, checksummed file
//! format ([`format`]), each vCPU's architectural state ([`vcpu`]), guest RAM as runs of
//! pages ([`memory`]), what a restoring CPU must offer ([`Requirements`]) and the assembled
//! [`Snapshot`] with its consistency checks. The kernel pauses a VM and fills these in, and
//! restores from them; every refusal is a [`SnapshotError`] with a message for the user.
//!
//! The local APIC sections hold the model's encoding (`vm::apic`: its 4 KiB register page and
//! what the page cannot hold), the platform
//! and virtio sections the device models' own encodings; this module carries them checksummed
//! and checks that one exists per vCPU / per device window.

pub mod clone_memory;
pub mod codec;
pub mod format;
pub mod memory;
pub mod vcpu;
pub mod virtio_state;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use codec::{Dec, Enc};
use format::{Parsed, Writer};
pub use format::{SectionKind, SnapshotError};
pub use vcpu::VcpuState;

/// The VM a snapshot was taken of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    pub name: String,
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub memory: u64,
    pub vcpus: u32,
    /// `GuestKind` as its configuration name ("linux", "elf64", ...).
    pub kind: String,
    pub kvm_pv: bool,
    /// virtio-mmio devices (windows 0..devices).
    pub devices: u32,
    /// The host TSC when the device state was taken: a restore moves every device deadline
    /// by (its own TSC - this), as if the VM had been paused in between.
    pub taken_tsc: u64,
}

/// Longest VM name / kind stored.
const MAX_NAME: usize = 64;

impl VmInfo {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.bytes(self.name.as_bytes())
            .u64(self.memory)
            .u32(self.vcpus)
            .bytes(self.kind.as_bytes())
            .u8(u8::from(self.kvm_pv))
            .u32(self.devices)
            .u64(self.taken_tsc);
        e.0
    }

    fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let mut d = Dec::new(b);
        let short = "the section ends early";
        let text = |v: &[u8]| {
            core::str::from_utf8(v)
                .map(String::from)
                .map_err(|_| "a name that is not UTF-8")
        };
        let name = text(d.bytes(MAX_NAME).ok_or(short)?)?;
        let memory = d.u64().ok_or(short)?;
        let vcpus = d.u32().ok_or(short)?;
        let kind = text(d.bytes(MAX_NAME).ok_or(short)?)?;
        let kvm_pv = match d.u8().ok_or(short)? {
            0 => false,
            1 => true,
            _ => return Err("kvm-pv flag neither 0 nor 1"),
        };
        let devices = d.u32().ok_or(short)?;
        let taken_tsc = d.u64().ok_or(short)?;
        if !d.done() {
            return Err("bytes after the last field");
        }
        if memory == 0 || memory % memory::PAGE as u64 != 0 {
            return Err("RAM size not a positive multiple of 4 KiB");
        }
        if vcpus == 0 || vcpus > crate::config::MAX_VCPUS {
            return Err("vCPU count outside 1..=16");
        }
        if devices as usize > crate::config::MAX_DEVICES {
            return Err("more than 8 virtio devices");
        }
        Ok(VmInfo {
            name,
            memory,
            vcpus,
            kind,
            kvm_pv,
            devices,
            taken_tsc,
        })
    }
}

/// A CPUID register the guest was shown, by leaf and subleaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureWord {
    pub leaf: u32,
    pub subleaf: u32,
    /// 0 EAX, 1 EBX, 2 ECX, 3 EDX.
    pub register: u8,
    pub bits: u32,
}

/// What the guest relied on: the CPU features it was offered (it may use any of them at any
/// instruction, so the restoring CPU must have every one), the extended state components in
/// its XCR0 and their XSAVE area size, and the TSC rate its clocks were calibrated to
/// (kvm-clock and the guest's TSC clocksource assume it; without TSC scaling another rate
/// would make its time run fast or slow).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    pub features: Vec<FeatureWord>,
    pub xcr0: u64,
    pub xsave_size: u32,
    pub tsc_hz: u64,
}

/// How far the restoring CPU's TSC rate may differ (0.1%: calibration noise against the PIT).
pub const TSC_TOLERANCE_PPM: u64 = 1000;

/// Why this CPU cannot continue the snapshot's guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Bits of a CPUID register the guest was offered that this CPU lacks.
    MissingFeature {
        word: FeatureWord,
        missing: u32,
    },
    /// XCR0 components the guest enabled that this CPU lacks.
    MissingXstate {
        missing: u64,
    },
    /// The guest's XSAVE area is larger than this CPU's.
    XsaveTooLarge {
        needed: u32,
        have: u32,
    },
    TscRate {
        snapshot_hz: u64,
        host_hz: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::MissingFeature { word, missing } => write!(
                f,
                "the guest was offered CPUID.(EAX={:#x},ECX={}):{} bits {missing:#010x}, which this CPU lacks: restore on a CPU with them",
                word.leaf,
                word.subleaf,
                ["EAX", "EBX", "ECX", "EDX"][usize::from(word.register & 3)]
            ),
            Mismatch::MissingXstate { missing } => write!(
                f,
                "the guest enabled extended state components {missing:#x} (XCR0) this CPU lacks"
            ),
            Mismatch::XsaveTooLarge { needed, have } => write!(
                f,
                "the guest's XSAVE area is {needed} bytes, this CPU's {have}"
            ),
            Mismatch::TscRate { snapshot_hz, host_hz } => write!(
                f,
                "the guest's clocks run on a {} kHz TSC, this CPU's is {} kHz (no TSC scaling): restore on a machine of the same TSC rate",
                snapshot_hz / 1000,
                host_hz / 1000
            ),
        }
    }
}

impl Requirements {
    /// Every way `host` (the restoring CPU's offer: same leaves, its own bits) falls short of
    /// `self`; empty when the snapshot can be restored there.
    pub fn check(&self, host: &Requirements) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for w in &self.features {
            let have = host
                .features
                .iter()
                .find(|h| h.leaf == w.leaf && h.subleaf == w.subleaf && h.register == w.register)
                .map_or(0, |h| h.bits);
            let missing = w.bits & !have;
            if missing != 0 {
                out.push(Mismatch::MissingFeature { word: *w, missing });
            }
        }
        let missing = self.xcr0 & !host.xcr0;
        if missing != 0 {
            out.push(Mismatch::MissingXstate { missing });
        }
        if self.xsave_size > host.xsave_size {
            out.push(Mismatch::XsaveTooLarge {
                needed: self.xsave_size,
                have: host.xsave_size,
            });
        }
        let diff = self.tsc_hz.abs_diff(host.tsc_hz);
        if u128::from(diff) * 1_000_000 > u128::from(self.tsc_hz) * u128::from(TSC_TOLERANCE_PPM) {
            out.push(Mismatch::TscRate {
                snapshot_hz: self.tsc_hz,
                host_hz: host.tsc_hz,
            });
        }
        out
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(self.features.len() as u32);
        for w in &self.features {
            e.u32(w.leaf).u32(w.subleaf).u8(w.register).u32(w.bits);
        }
        e.u64(self.xcr0).u32(self.xsave_size).u64(self.tsc_hz);
        e.0
    }

    fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let mut d = Dec::new(b);
        let short = "the section ends early";
        let n = d.u32().ok_or(short)?;
        if n > 64 {
            return Err("more than 64 feature words");
        }
        let mut features = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let w = FeatureWord {
                leaf: d.u32().ok_or(short)?,
                subleaf: d.u32().ok_or(short)?,
                register: d.u8().ok_or(short)?,
                bits: d.u32().ok_or(short)?,
            };
            if w.register > 3 {
                return Err("a feature word's register is not EAX..EDX");
            }
            features.push(w);
        }
        let r = Requirements {
            features,
            xcr0: d.u64().ok_or(short)?,
            xsave_size: d.u32().ok_or(short)?,
            tsc_hz: d.u64().ok_or(short)?,
        };
        if !d.done() {
            return Err("bytes after the last field");
        }
        if r.tsc_hz == 0 {
            return Err("a TSC rate of 0");
        }
        Ok(r)
    }
}

/// A whole VM snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub info: VmInfo,
    pub requirements: Requirements,
    /// One per vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// One local APIC per vCPU (`LocalApic::save_state`).
    pub lapics: Vec<Vec<u8>>,
    /// The platform devices' encoding.
    pub platform: Vec<u8>,
    /// One per virtio device window.
    pub virtio: Vec<Vec<u8>>,
    /// Guest RAM ([`memory::encode`]).
    pub memory: Vec<u8>,
}

/// A local APIC section's largest size: the 4 KiB register page and a few fields more.
pub const LAPIC_SECTION: usize = 8192;

fn bad(kind: SectionKind, instance: u32, what: &'static str) -> SnapshotError {
    SnapshotError::BadSection {
        kind,
        instance,
        what,
    }
}

impl Snapshot {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.section(SectionKind::VmInfo, 0, self.info.encode());
        w.section(SectionKind::Requirements, 0, self.requirements.encode());
        for (i, v) in self.vcpus.iter().enumerate() {
            w.section(SectionKind::Vcpu, i as u32, v.encode());
        }
        for (i, l) in self.lapics.iter().enumerate() {
            w.section(SectionKind::LocalApic, i as u32, l.clone());
        }
        w.section(SectionKind::Platform, 0, self.platform.clone());
        for (i, d) in self.virtio.iter().enumerate() {
            w.section(SectionKind::Virtio, i as u32, d.clone());
        }
        w.section(SectionKind::Memory, 0, self.memory.clone());
        w.finish()
    }

    /// Parses and checks a snapshot: the container ([`Parsed::parse`]), every section's
    /// contents, one vCPU and local APIC section per vCPU, one virtio section per device, and
    /// a memory section that covers the VM's RAM.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let p = Parsed::parse(bytes)?;
        let info = VmInfo::decode(p.get(SectionKind::VmInfo, 0)?)
            .map_err(|w| bad(SectionKind::VmInfo, 0, w))?;
        let requirements = Requirements::decode(p.get(SectionKind::Requirements, 0)?)
            .map_err(|w| bad(SectionKind::Requirements, 0, w))?;
        let expect = |kind: SectionKind, n: u32| -> Result<(), SnapshotError> {
            if p.count(kind) as u32 > n {
                let extra = p
                    .sections
                    .iter()
                    .find(|s| s.kind == kind && s.instance >= n)
                    .map_or(n, |s| s.instance);
                return Err(bad(
                    kind,
                    extra,
                    "more sections than the VM has vCPUs or devices",
                ));
            }
            Ok(())
        };
        expect(SectionKind::Vcpu, info.vcpus)?;
        expect(SectionKind::LocalApic, info.vcpus)?;
        expect(SectionKind::Virtio, info.devices)?;
        let mut vcpus = Vec::with_capacity(info.vcpus as usize);
        let mut lapics = Vec::with_capacity(info.vcpus as usize);
        for i in 0..info.vcpus {
            vcpus.push(
                VcpuState::decode(p.get(SectionKind::Vcpu, i)?)
                    .map_err(|w| bad(SectionKind::Vcpu, i, w))?,
            );
            let l = p.get(SectionKind::LocalApic, i)?;
            if l.len() > LAPIC_SECTION {
                return Err(bad(
                    SectionKind::LocalApic,
                    i,
                    "larger than 8 KiB (a register page and its timer)",
                ));
            }
            lapics.push(l.to_vec());
        }
        let virtio = (0..info.devices)
            .map(|i| p.get(SectionKind::Virtio, i).map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()?;
        let mem = p.get(SectionKind::Memory, 0)?;
        memory::decode(mem, info.memory / memory::PAGE as u64)
            .map_err(|w| bad(SectionKind::Memory, 0, w))?;
        Ok(Snapshot {
            platform: p.get(SectionKind::Platform, 0)?.to_vec(),
            memory: mem.to_vec(),
            info,
            requirements,
            vcpus,
            lapics,
            virtio,
        })
    }
}
