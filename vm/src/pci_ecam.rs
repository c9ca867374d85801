//! PCI Express enhanced configuration access (ECAM): the memory-mapped configuration space
//! the ACPI MCFG describes (PCI Firmware Specification 3.0 §4.1.2, Table 4-3: base address,
//! segment group, start and end bus per entry). Each function has 4 KiB at
//! `base + ((bus - start_bus) << 20 | device << 15 | function << 12)` (PCI Express Base
//! Specification 4.0 §7.2.2, Table 7-1). Hardware-independent: the kernel maps the region.

/// One MCFG allocation (segment group 0 is the one mechanism #1 also reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// Configuration space of one function under ECAM (PCIe 4.0 §7.2.2).
pub const FUNCTION_BYTES: u64 = 4096;

impl EcamRegion {
    /// Bytes the region spans (1 MiB per bus).
    pub fn len(&self) -> u64 {
        (u64::from(self.end_bus.saturating_sub(self.start_bus)) + 1) << 20
    }

    pub fn is_empty(&self) -> bool {
        self.end_bus < self.start_bus
    }

    /// Byte offset from `base` of register `offset` of bus/device/function, or `None` when
    /// the bus is outside the region, the device or function out of range, or the register
    /// not dword aligned inside the function's 4 KiB.
    pub fn offset(&self, bus: u8, device: u8, function: u8, offset: u16) -> Option<u64> {
        if bus < self.start_bus
            || bus > self.end_bus
            || device >= 32
            || function >= 8
            || u64::from(offset) >= FUNCTION_BYTES
            || !offset.is_multiple_of(4)
        {
            return None;
        }
        Some(
            u64::from(bus - self.start_bus) << 20
                | u64::from(device) << 15
                | u64::from(function) << 12
                | u64::from(offset),
        )
    }
}

/// The region to use from a table's entries: segment group 0's (the only one the
/// enumeration walks), if its bus range is sane.
pub fn segment0(entries: &[EcamRegion]) -> Option<EcamRegion> {
    entries
        .iter()
        .copied()
        .find(|e| e.segment == 0 && e.start_bus <= e.end_bus && e.base != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_ecam_layout() {
        // QEMU q35: MMCONFIG at 0xB000_0000, buses 0-255 (256 MiB).
        let q35 = EcamRegion {
            base: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 255,
        };
        assert_eq!(q35.len(), 256 << 20);
        assert_eq!(q35.offset(0, 0, 0, 0), Some(0));
        assert_eq!(q35.offset(0, 4, 0, 0x10), Some(4 << 15 | 0x10));
        assert_eq!(
            q35.offset(1, 2, 3, 0xFFC),
            Some(1 << 20 | 2 << 15 | 3 << 12 | 0xFFC)
        );
        assert_eq!(q35.offset(255, 31, 7, 0), Some(0x0FFF_F000));
        // Outside: device 32, function 8, unaligned or beyond-4K registers.
        assert_eq!(q35.offset(0, 32, 0, 0), None);
        assert_eq!(q35.offset(0, 0, 8, 0), None);
        assert_eq!(q35.offset(0, 0, 0, 2), None);
        assert_eq!(q35.offset(0, 0, 0, 4096), None);
        // A region starting at bus 0x10: bus 0x10 is at the base, bus 0x0F is outside.
        let r = EcamRegion {
            base: 0xE000_0000,
            segment: 0,
            start_bus: 0x10,
            end_bus: 0x1F,
        };
        assert_eq!(r.len(), 16 << 20);
        assert_eq!(r.offset(0x10, 0, 0, 0), Some(0));
        assert_eq!(r.offset(0x11, 0, 0, 0), Some(1 << 20));
        assert_eq!(r.offset(0x0F, 0, 0, 0), None);
        assert_eq!(r.offset(0x20, 0, 0, 0), None);
    }

    #[test]
    fn segment_zero_is_chosen() {
        let e = |segment, start_bus, end_bus, base| EcamRegion {
            base,
            segment,
            start_bus,
            end_bus,
        };
        assert_eq!(
            segment0(&[e(1, 0, 255, 0xC000_0000), e(0, 0, 63, 0xB000_0000)]),
            Some(e(0, 0, 63, 0xB000_0000))
        );
        assert_eq!(
            segment0(&[e(0, 9, 3, 0xB000_0000)]),
            None,
            "reversed bus range"
        );
        assert_eq!(segment0(&[e(0, 0, 255, 0)]), None, "no base");
        assert_eq!(segment0(&[]), None);
    }
}
