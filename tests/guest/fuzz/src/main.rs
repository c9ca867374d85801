//! `fuzz`: a guest that attacks the hypervisor with a seeded stream of random actions
//! (issue 9, "A fuzzing guest in the suite"): hypercalls and MULTICALL batches, port I/O,
//! RDMSR/WRMSR, MOV to CR0/CR3/CR4/CR8, raw MMIO and a virtio driver gone wrong, XSETBV,
//! INVD/WBINVD, INT3/INT n/UD2, CPUID, `sti; hlt`, RDPMC, MONITOR/MWAIT and a few others.
//! Every exception it provokes is caught by an IDT covering all 256 vectors and counted.
//!
//! Parameters: the static [`FUZZ_PARAMS`] starts with the 16 bytes `BULKHEAD-FUZZ-v1`; the
//! test harness finds them in a copy of the ELF and overwrites the little-endian u64s after
//! them (offsets from the magic): seed +16, iterations +24, trace-from +32 (the first
//! iteration that prints a `T` line per action; u64::MAX = none), disabled +40 (a bit mask of
//! actions never chosen, bit i = [`ACTIONS`]\[i\]), windows +48 (how many virtio-mmio windows
//! the VM has: each must exist, a read of a missing one stops the VM).
//!
//! Output (docs: tests/guest/README.md): `guest fuzz: start`, a parameter line, the devices,
//! `guest fuzz: seed=S iter=N faults=F` every 1,000 iterations, a per-vector fault line, then
//! `guest fuzz: DONE seed=S iterations=N faults=F` and `cli; hlt`. An exception the fuzzer
//! did not provoke prints `guest fuzz: FAIL unexpected-exception: ...` (with the iteration
//! and action) and ends the VM.

#![no_std]
#![no_main]

mod hc;
mod idt;
mod mem;
mod ops;
mod rng;
mod virtio;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use guest_rt::cpu::outb;
use guest_rt::report::{self, Line};
use mem::Mem;
use rng::Rng;

/// The harness-patchable parameters (see the crate docs for the layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub magic: [u8; 16],
    pub seed: u64,
    pub iterations: u64,
    pub trace_from: u64,
    pub disabled: u64,
    pub windows: u64,
}

#[used]
#[no_mangle]
pub static FUZZ_PARAMS: Params = Params {
    magic: *b"BULKHEAD-FUZZ-v1",
    seed: 1,
    iterations: 10_000,
    trace_from: u64::MAX,
    disabled: 0,
    windows: 2,
};

fn params() -> Params {
    // SAFETY: a plain read of an initialised static; volatile so the compiler uses the bytes
    // in the loaded image (which the harness patched), not the initialiser.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(FUZZ_PARAMS)) }
}

/// The actions and their weights; bit i of `disabled` removes action i.
pub const ACTIONS: [(&str, u32); 22] = [
    ("hypercall", 12),
    ("multicall", 5),
    ("pio", 16),
    ("rdmsr", 5),
    ("wrmsr", 6),
    ("cr0", 2),
    ("cr3", 2),
    ("cr4", 2),
    ("cr8", 2),
    ("mmio", 12),
    ("virtio", 10),
    ("xsetbv", 1),
    ("invd", 1),
    ("wbinvd", 1),
    ("int3", 2),
    ("intn", 3),
    ("ud", 1),
    ("cpuid", 6),
    ("hlt", 1),
    ("rdpmc", 1),
    ("mwait", 1),
    ("misc", 2),
];

/// Iterations between progress lines.
const PROGRESS_EVERY: u64 = 1000;
/// The smallest RAM the memory map needs (scratch starts at 4 MiB).
const MIN_RAM: u64 = 8 << 20;

const STACK_SIZE: usize = 64 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
/// The fuzzer's stack, in `.bss` (the hypervisor's, at the top of RAM, becomes scratch).
static mut STACK: Stack = Stack([0; STACK_SIZE]);

core::arch::global_asm!(
    ".pushsection .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "cli",
    "cld",
    "mov r12, rdi",
    "mov r13, rsi",
    "lea rdi, [rip + __bss_start]",
    "lea rcx, [rip + __bss_end]",
    "sub rcx, rdi",
    "xor eax, eax",
    "rep stosb",
    "lea rsp, [rip + {stack} + {size}]",
    "mov rdi, r12",
    "mov rsi, r13",
    "xor ebp, ebp",
    "call {entry}",
    "2:",
    "cli",
    "hlt",
    "jmp 2b",
    ".popsection",
    stack = sym STACK,
    size = const STACK_SIZE,
    entry = sym fuzz_main,
);

static ITERATION: AtomicU64 = AtomicU64::new(0);
static ACTION: AtomicUsize = AtomicUsize::new(usize::MAX);
static TRACING: AtomicBool = AtomicBool::new(false);
static DIRTY: AtomicBool = AtomicBool::new(false);

pub fn current_iteration() -> u64 {
    ITERATION.load(Ordering::Relaxed)
}

pub fn current_action() -> &'static str {
    ACTIONS
        .get(ACTION.load(Ordering::Relaxed))
        .map_or("none", |a| a.0)
}

pub fn tracing() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// The console may hold a partial line of fuzz bytes: the next report line starts afresh.
pub fn console_dirty() {
    DIRTY.store(true, Ordering::Relaxed);
}

// 16550 registers (COM1 at 0x3F8): THR, LCR (+3), MCR (+4).
const COM1: u16 = 0x3F8;
const COM1_LCR: u16 = COM1 + 3;
const COM1_MCR: u16 = COM1 + 4;
/// LCR: 8 data bits, no parity, 1 stop bit, DLAB clear.
const LCR_8N1: u8 = 0x03;
/// MCR: DTR | RTS, no loopback, OUT2 clear (no UART interrupts).
const MCR_DTR_RTS: u8 = 0x03;

/// Prints `guest fuzz: <args>` on the UART, after putting the UART back into a state that
/// transmits (the port fuzzing may have set DLAB or loopback).
pub fn say(args: core::fmt::Arguments<'_>) {
    outb(COM1_LCR, LCR_8N1);
    outb(COM1_MCR, MCR_DTR_RTS);
    if DIRTY.swap(false, Ordering::Relaxed) {
        outb(COM1, b'\n');
    }
    let mut line = Line::guest(args);
    for &b in line.finish() {
        outb(COM1, b);
    }
}

/// A trace line `guest fuzz: T <iteration> <text>`, through CONSOLE_WRITE (one exit per
/// line), on the UART if the call fails.
pub fn trace_line(args: core::fmt::Arguments<'_>) {
    let mut line = Line::guest(format_args!("T {} {}", current_iteration(), args));
    let bytes = line.finish();
    if DIRTY.swap(false, Ordering::Relaxed) {
        outb(COM1, b'\n');
    }
    // SAFETY: CONSOLE_WRITE only reads the buffer.
    let r = unsafe {
        hc::call(
            hc::CONSOLE_WRITE,
            [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0],
        )
    };
    if r != Ok(bytes.len() as u64) {
        outb(COM1_LCR, LCR_8N1);
        outb(COM1_MCR, MCR_DTR_RTS);
        for &b in bytes.iter() {
            outb(COM1, b);
        }
    }
}

/// Prints a trace line for the current action when tracing is on.
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            $crate::trace_line(format_args!($($t)*));
        }
    };
}

fn run(action: usize, rng: &mut Rng, mem: &Mem, devs: &mut virtio::Devices) {
    match action {
        0 => hc::single(rng, mem),
        1 => hc::multicall(rng, mem),
        2 => ops::pio(rng),
        3 => ops::rdmsr(rng),
        4 => ops::wrmsr(rng),
        5 => ops::cr0(rng),
        6 => ops::cr3(rng),
        7 => ops::cr4(rng),
        8 => ops::cr8(rng),
        9 => virtio::raw(rng, mem, devs),
        10 => virtio::drive(rng, mem, devs),
        11 => ops::xsetbv(rng),
        12 => ops::invd(),
        13 => ops::wbinvd(),
        14 => ops::int3(),
        15 => ops::intn(rng),
        16 => ops::ud2(rng),
        17 => ops::cpuid(rng),
        18 => ops::hlt(rng),
        19 => ops::rdpmc(rng),
        20 => ops::mwait(rng, mem),
        _ => ops::misc(rng, mem),
    }
}

/// `name=count` for every exception vector taken, and the interrupts.
fn fault_summary() {
    let mut line = Line::new();
    let _ = write!(line, "faults by vector:");
    for v in 0..idt::FIRST_INTERRUPT {
        let n = idt::count(v);
        match (n, guest_rt::trap::vector_name(v)) {
            (0, _) => {}
            (_, "vector") => {
                let _ = write!(line, " v{v}={n}");
            }
            (_, name) => {
                let _ = write!(line, " {name}={n}");
            }
        }
    }
    let _ = write!(line, " interrupts={}", idt::interrupts());
    let text = line.finish();
    let text = core::str::from_utf8(&text[..text.len() - 1]).unwrap_or("?");
    say(format_args!("{text}"));
}

extern "C" fn fuzz_main(ram: u64, vm_index: u64) -> ! {
    idt::init();
    outb(COM1_LCR, LCR_8N1);
    report::start("fuzz");
    let p = params();
    let mem = Mem {
        ram,
        windows: p.windows.min(8),
    };
    say(format_args!(
        "seed={} iterations={} ram={ram:#x} vm-index={vm_index} windows={} trace-from={:#x} disabled={:#x}",
        p.seed, p.iterations, mem.windows, p.trace_from, p.disabled
    ));
    if ram < MIN_RAM {
        say(format_args!(
            "FAIL ram: {ram:#x} bytes; the fuzzer needs at least {MIN_RAM:#x}"
        ));
        guest_rt::halt();
    }
    let mut devs = virtio::Devices::probe(&mem);
    let mut line = Line::new();
    let _ = write!(line, "devices:");
    for id in devs.ids() {
        let _ = write!(line, " {id}");
    }
    let text = line.finish();
    say(format_args!(
        "{} ({} windows)",
        core::str::from_utf8(&text[..text.len() - 1]).unwrap_or("?"),
        devs.count()
    ));
    let mut weights = [0u32; ACTIONS.len()];
    for (i, w) in weights.iter_mut().enumerate() {
        if p.disabled & (1 << i) == 0 {
            *w = ACTIONS[i].1;
        }
    }
    if weights.iter().all(|&w| w == 0) {
        say(format_args!(
            "FAIL params: every action is disabled ({:#x})",
            p.disabled
        ));
        guest_rt::halt();
    }
    let mut rng = Rng::new(p.seed);
    for iter in 0..p.iterations {
        ITERATION.store(iter, Ordering::Relaxed);
        TRACING.store(iter >= p.trace_from, Ordering::Relaxed);
        let action = rng.weighted(&weights);
        ACTION.store(action, Ordering::Relaxed);
        run(action, &mut rng, &mem, &mut devs);
        if (iter + 1) % PROGRESS_EVERY == 0 {
            say(format_args!(
                "seed={} iter={} faults={}",
                p.seed,
                iter + 1,
                idt::exceptions()
            ));
        }
    }
    ACTION.store(usize::MAX, Ordering::Relaxed);
    fault_summary();
    say(format_args!(
        "DONE seed={} iterations={} faults={}",
        p.seed,
        p.iterations,
        idt::exceptions()
    ));
    guest_rt::halt()
}
