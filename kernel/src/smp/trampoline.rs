//! The application processors' start-up code (SDM Vol. 3A §9.4.4.1 "Typical AP Initialization
//! Sequence", §10.8.5 "Initializing IA-32e Mode"): a SIPI starts an AP in real mode at a page
//! below 1 MiB; this code switches it to protected mode, enables PAE and long mode with a page
//! table that identity-maps the page, and jumps to `ap_entry` in the kernel with its stack and
//! argument. The only 16/32-bit assembly in Bulkhead.
//!
//! The page starts with a data block the boot CPU fills in before each SIPI (fixed offsets,
//! checked at run time against the assembled bytes):
//!
//! | offset | field |
//! |---|---|
//! | 8 | CR3 (below 4 GiB: loaded by 32-bit code) |
//! | 16 | the AP's stack top |
//! | 24 | the 64-bit entry point |
//! | 32 | the entry's argument (RDI) |
//! | 40 | GDTR (limit, 32-bit base: filled by the AP itself) |
//! | 48 | GDT: null, 32-bit code (0x08), data (0x10), 64-bit code (0x18) |
//! | 80 | progress: 1 real mode, 2 protected mode, 3 long mode |

use crate::memory::{self, FRAME_SIZE};
use core::arch::global_asm;

global_asm!(
    ".pushsection .text.bulkhead_ap_trampoline, \"ax\"",
    ".code16",
    ".global bulkhead_ap_trampoline_start",
    "bulkhead_ap_trampoline_start:",
    "jmp 1f",
    ".balign 8",
    ".quad 0",  // 8: cr3
    ".quad 0",  // 16: stack
    ".quad 0",  // 24: entry
    ".quad 0",  // 32: argument
    ".word 31", // 40: GDTR limit
    ".long 0",  // 42: GDTR base
    ".word 0",
    ".quad 0",                  // 48: null descriptor
    ".quad 0x00cf9a000000ffff", // 0x08: 32-bit code, base 0, 4 GiB
    ".quad 0x00cf92000000ffff", // 0x10: data, base 0, 4 GiB
    ".quad 0x00af9a000000ffff", // 0x18: 64-bit code
    ".long 0",                  // 80: progress
    ".long 0",
    "1:",
    "cli",
    "cld",
    "movw %cs, %ax",
    "movw %ax, %ds",
    "movw %ax, %ss",
    "movw $0x1000, %sp",
    "xorl %ebx, %ebx",
    "movw %ax, %bx",
    "shll $4, %ebx", // EBX = the page's physical (= linear) address
    "movl $1, 80",
    "leal 48(%ebx), %eax",
    "movl %eax, 42",
    "lgdtl 40",
    "movl %cr0, %eax",
    "orl $1, %eax", // CR0.PE
    "movl %eax, %cr0",
    "leal (2f - bulkhead_ap_trampoline_start)(%ebx), %eax",
    "pushl $0x08",
    "pushl %eax",
    "lretl",
    ".code32",
    "2:",
    "movw $0x10, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %ss",
    "leal 0x1000(%ebx), %esp",
    "movl $2, 80(%ebx)",
    "movl %cr4, %eax",
    "orl $(1 << 5), %eax", // CR4.PAE
    "movl %eax, %cr4",
    "movl 8(%ebx), %eax",
    "movl %eax, %cr3",
    "movl $0xc0000080, %ecx", // IA32_EFER
    "rdmsr",
    "orl $((1 << 8) | (1 << 11)), %eax", // LME, NXE (the kernel's tables use XD)
    "wrmsr",
    "movl %cr0, %eax",
    "orl $((1 << 31) | (1 << 16)), %eax", // PG (activates IA-32e mode), WP
    "movl %eax, %cr0",
    "leal (3f - bulkhead_ap_trampoline_start)(%ebx), %eax",
    "pushl $0x18",
    "pushl %eax",
    "lretl",
    ".code64",
    "3:",
    "movl %ebx, %ebx", // the upper halves are undefined after the mode switch
    "movl $3, 80(%rbx)",
    "movq 16(%rbx), %rsp",
    "movq 32(%rbx), %rdi",
    "movq 24(%rbx), %rax",
    "xorl %ebp, %ebp",
    "pushq $0", // no return address: the entry never returns; keeps the SysV alignment
    "jmpq *%rax",
    ".global bulkhead_ap_trampoline_end",
    "bulkhead_ap_trampoline_end:",
    ".popsection",
    options(att_syntax)
);

extern "C" {
    static bulkhead_ap_trampoline_start: u8;
    static bulkhead_ap_trampoline_end: u8;
}

const OFF_CR3: usize = 8;
const OFF_STACK: usize = 16;
const OFF_ENTRY: usize = 24;
const OFF_ARG: usize = 32;
const OFF_GDT: usize = 48;
const OFF_PROGRESS: usize = 80;
/// The 32-bit code descriptor at [`OFF_GDT`] + 8: checks the layout above.
const CODE32: u64 = 0x00cf_9a00_0000_ffff;

/// Why the start-up page could not be prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrampolineError {
    NoLowMemory,
    OutOfMemory,
    Layout,
    LowPageMapped,
}

impl core::fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrampolineError::NoLowMemory => write!(
                f,
                "the memory map has no free page below 1 MiB for the start-up code"
            ),
            TrampolineError::OutOfMemory => write!(f, "no memory for the start-up page tables"),
            TrampolineError::Layout => {
                write!(
                    f,
                    "the start-up code's data block is not where Bulkhead expects it (a build bug)"
                )
            }
            TrampolineError::LowPageMapped => write!(
                f,
                "the boot page tables map the start-up page with a large page elsewhere"
            ),
        }
    }
}

/// The start-up page, copied to low memory, with a CR3 below 4 GiB that maps it 1:1.
#[derive(Debug)]
pub struct Trampoline {
    page: u64,
    cr3: u64,
}

/// Page-table entry bits (SDM Vol. 3A §5.5 Table 5-15 .. 5-20).
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_LARGE: u64 = 1 << 7;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

fn table(phys: u64) -> *mut u64 {
    memory::phys_to_virt(phys).cast::<u64>()
}

impl Trampoline {
    /// Copies the start-up code to the reserved low frames and builds its page-table root: a
    /// copy of the kernel's level-4 table (below 4 GiB, in the second low frame) whose path to
    /// the start-up page is copied and completed with a 4 KiB identity mapping, so the kernel's
    /// own tables are not changed.
    pub fn prepare() -> Result<Trampoline, TrampolineError> {
        let low = memory::low_frames().ok_or(TrampolineError::NoLowMemory)?;
        let (page, root) = (low, low + FRAME_SIZE);
        // SAFETY: the two symbols delimit the assembled start-up code in the kernel image.
        let code = unsafe {
            let start = core::ptr::addr_of!(bulkhead_ap_trampoline_start);
            let end = core::ptr::addr_of!(bulkhead_ap_trampoline_end);
            core::slice::from_raw_parts(start, end.offset_from(start) as usize)
        };
        if code.len() > FRAME_SIZE as usize / 2
            || u64::from_le_bytes(
                code[OFF_GDT + 8..OFF_GDT + 16]
                    .try_into()
                    .unwrap_or_default(),
            ) != CODE32
        {
            return Err(TrampolineError::Layout);
        }
        // SAFETY: the low frames are reserved for this (memory::low_frames) and mapped by the
        // direct map; the kernel's level-4 table is read through it.
        unsafe {
            let dst = memory::phys_to_virt(page);
            core::ptr::write_bytes(dst, 0, FRAME_SIZE as usize);
            core::ptr::copy_nonoverlapping(code.as_ptr(), dst, code.len());
            let kernel_root = crate::arch::read_cr3() & PTE_ADDR;
            core::ptr::copy_nonoverlapping(table(kernel_root), table(root), 512);
        }
        Self::identity_map(root, page)?;
        Ok(Trampoline { page, cr3: root })
    }

    /// Maps `page` 1:1 in the hierarchy at `root`, copying every table on the way (they may be
    /// shared with the kernel's tables) and creating missing ones.
    fn identity_map(root: u64, page: u64) -> Result<(), TrampolineError> {
        let mut t = root;
        for level in (1..=3).rev() {
            let index = ((page >> (12 + 9 * level)) & 0x1ff) as usize;
            // SAFETY: `t` is a table of this private hierarchy (a copy or a new frame).
            let entry = unsafe { table(t).add(index).read() };
            if entry & PTE_PRESENT != 0 && entry & PTE_LARGE != 0 {
                // A large page: usable only if it already maps `page` to itself.
                let size = 1u64 << (12 + 9 * level);
                if entry & PTE_ADDR & !(size - 1) == page & !(size - 1) {
                    return Ok(());
                }
                return Err(TrampolineError::LowPageMapped);
            }
            let next = memory::allocate_frame().ok_or(TrampolineError::OutOfMemory)?;
            if entry & PTE_PRESENT != 0 {
                // SAFETY: both are page tables mapped by the direct map.
                unsafe {
                    core::ptr::copy_nonoverlapping(table(entry & PTE_ADDR), table(next), 512)
                };
            }
            // SAFETY: as above; the entry now points at the private copy.
            unsafe {
                // The existing entry's flag bits 11:0, without XD (bit 63): the page runs code.
                table(t)
                    .add(index)
                    .write(next | PTE_PRESENT | PTE_WRITABLE | (entry & 0xfff))
            };
            t = next;
        }
        let index = ((page >> 12) & 0x1ff) as usize;
        // SAFETY: `t` is the private level-1 table; the entry maps the start-up page 1:1,
        // present, writable, executable.
        unsafe { table(t).add(index).write(page | PTE_PRESENT | PTE_WRITABLE) };
        Ok(())
    }

    /// The SIPI vector: the page number (SDM Vol. 3A §11.6.1, start-up IPI).
    pub fn vector(&self) -> u8 {
        (self.page >> 12) as u8
    }

    /// Fills in the data block for the next AP.
    pub fn arm(&self, stack_top: u64, entry: u64, arg: u64) {
        let base = memory::phys_to_virt(self.page);
        // SAFETY: the page is the reserved start-up page; the offsets are its data block.
        unsafe {
            base.add(OFF_CR3).cast::<u64>().write_volatile(self.cr3);
            base.add(OFF_STACK).cast::<u64>().write_volatile(stack_top);
            base.add(OFF_ENTRY).cast::<u64>().write_volatile(entry);
            base.add(OFF_ARG).cast::<u64>().write_volatile(arg);
            base.add(OFF_PROGRESS).cast::<u32>().write_volatile(0);
        }
    }

    /// How far the last AP got (0 not started, 1 real mode, 2 protected mode, 3 long mode).
    pub fn progress(&self) -> u32 {
        // SAFETY: as in `arm`.
        unsafe {
            memory::phys_to_virt(self.page)
                .add(OFF_PROGRESS)
                .cast::<u32>()
                .read_volatile()
        }
    }
}
