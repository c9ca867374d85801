//! NVMe controllers for `vm::store::nvme` (which holds the driver logic, host-tested): each
//! PCI function of class 01.08.02 gets memory decoding and bus mastering, its BAR0 is used
//! through the direct map (the firmware's MTRRs keep the PCI hole uncached) or, above it,
//! through an uncached mapping of its own (`mmio_map`), with volatile 32-bit accesses; six
//! zeroed frames become its queues, Identify page and PRP list page, and 64 KiB of
//! contiguous memory its bounce buffer.

use crate::memory;
use crate::pci::{self, Function};
use vm::store::nvme::{DmaMemory, NvmeController, NvmeRegs, Pages, BUFFER_BYTES, PAGE};

/// The registers and doorbells the driver touches: 0x1000 + 4 doorbells of stride ≤ 16.
const BAR_BYTES: u64 = 0x2000;

#[derive(Debug)]
pub struct MmioRegs {
    base: *mut u8,
}

// SAFETY: the pointer is the controller's BAR in the direct map; one controller object owns
// it and it is only used under the storage lock.
unsafe impl Send for MmioRegs {}

impl NvmeRegs for MmioRegs {
    fn read32(&mut self, offset: u64) -> u32 {
        // SAFETY: `offset` is a register offset below BAR_BYTES (the driver's constants), in a
        // BAR checked to be direct-mapped; MMIO needs a volatile access.
        unsafe { self.base.add(offset as usize).cast::<u32>().read_volatile() }
    }

    fn write32(&mut self, offset: u64, value: u32) {
        // SAFETY: as in `read32`.
        unsafe {
            self.base
                .add(offset as usize)
                .cast::<u32>()
                .write_volatile(value)
        }
    }

    fn now(&mut self) -> u64 {
        crate::arch::rdtsc()
    }
}

/// DMA through the direct map: the frames are the driver's own.
#[derive(Debug)]
pub struct DirectDma;

impl DmaMemory for DirectDma {
    fn read(&mut self, phys: u64, out: &mut [u8]) {
        // Aligned 32-bit reads where possible: a completion entry's DW3 is read in one access.
        for (k, chunk) in out.chunks_mut(4).enumerate() {
            let at = phys + 4 * k as u64;
            if chunk.len() == 4 && at.is_multiple_of(4) {
                // SAFETY: `at` lies in one of the frames this driver allocated (its queues and
                // bounce page, at most one page per access), mapped by the direct map and
                // 4-aligned; the controller may be writing it, so the read is volatile.
                let v = unsafe { memory::phys_to_virt(at).cast::<u32>().read_volatile() };
                chunk.copy_from_slice(&v.to_le_bytes());
            } else {
                for (i, b) in chunk.iter_mut().enumerate() {
                    // SAFETY: as above, one byte.
                    *b = unsafe { memory::phys_to_virt(at + i as u64).read_volatile() };
                }
            }
        }
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`: the driver's own frames, written before the doorbell
            // that hands them to the controller.
            unsafe { memory::phys_to_virt(phys + i as u64).write_volatile(*b) };
        }
    }
}

/// Brings up every NVMe controller; reports each one (and why one is not used).
pub fn controllers(
    functions: &[Function],
    tick_hz: u64,
) -> alloc::vec::Vec<NvmeController<MmioRegs, DirectDma>> {
    let mut out = alloc::vec::Vec::new();
    let nvme = functions.iter().filter(|f| {
        f.is(pci::class::MASS_STORAGE, pci::class::NVM) && f.prog_if == pci::class::NVME_PROG_IF
    });
    for (i, f) in nvme.enumerate() {
        let name = vm::store::nvme::unit_name(i);
        let Some(bar) = f.memory_bar0() else {
            log::warn!("nvme{i} ({f}): BAR0 is not a memory BAR; not used");
            continue;
        };
        let base = if memory::is_direct_mapped(bar)
            && memory::is_direct_mapped(bar + BAR_BYTES - memory::FRAME_SIZE)
        {
            memory::phys_to_virt(bar)
        } else {
            match crate::mmio_map::map(bar, BAR_BYTES) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("nvme{i} ({f}): BAR0 at {bar:#x} cannot be mapped: {e}; not used");
                    continue;
                }
            }
        };
        let frame = || memory::allocate_frame();
        let (Some(a), Some(b), Some(c), Some(d), Some(e), Some(l)) =
            (frame(), frame(), frame(), frame(), frame(), frame())
        else {
            log::warn!("nvme{i}: no frames for its queues; not used");
            continue;
        };
        let Some(buffer) = memory::allocate_contiguous(BUFFER_BYTES as u64, PAGE as u64) else {
            log::warn!("nvme{i}: no memory for its 64 KiB bounce buffer; not used");
            continue;
        };
        f.enable_memory_and_dma();
        let regs = MmioRegs { base };
        let pages = Pages {
            admin_sq: a,
            admin_cq: b,
            io_sq: c,
            io_cq: d,
            data: e,
            prp_list: l,
            buffer,
        };
        match NvmeController::init(regs, DirectDma, pages, &name, tick_hz) {
            Ok(c) => {
                if let Some(id) = &c.identity {
                    let mdts = match id.mdts_bytes {
                        Some(m) => alloc::format!("MDTS {} KiB", m / 1024),
                        None => "no MDTS limit".into(),
                    };
                    log::info!(
                        "nvme{i} ({f}): \"{}\" serial \"{}\", {} namespace(s); namespace 1: {} blocks of {} bytes{}; {mdts}: up to {} KiB per command (PRP list)",
                        id.model,
                        id.serial,
                        id.namespaces,
                        id.ns1_blocks,
                        id.ns1_block_size,
                        if id.ns1_block_size == 512 { "" } else { " (not used: only 512-byte blocks are supported)" },
                        c.max_command_bytes / 1024
                    );
                }
                out.push(c);
            }
            Err(e) => log::warn!("nvme{i} ({f}): not used: {e}"),
        }
    }
    out
}
