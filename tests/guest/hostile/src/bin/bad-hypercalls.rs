//! `hostile-bad-hypercalls`: feeds the hypercall dispatcher garbage — unassigned numbers,
//! non-zero reserved arguments, buffers outside RAM (RAM end, straddling it, MMIO, 4 GiB,
//! non-canonical, u64::MAX, wrapping), huge lengths and counts, misaligned batches, and a
//! MULTICALL batch of bad entries (including a nested MULTICALL). Each case must return its
//! documented error (docs/hypercall-abi.md; `-Unsupported` for a call whose feature bit this
//! VM lacks); one PASS/FAIL line per case, then `DONE` (the guest survives).

#![no_std]
#![no_main]

use guest_rt::hv::{self, Entry};
use guest_rt::report::{self, fail, pass};
use guest_rt::{cpu, trap};

guest_rt::entry!(main);

const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
const VIRTIO_MMIO: u64 = 0xD000_0000;
const GIB4: u64 = 0x1_0000_0000;

#[repr(C, align(4096))]
struct Batch([Entry; 128]);
static mut BATCH: Batch = Batch([Entry::new(hv::NOP, 0, 0); 128]);

#[repr(C, align(4096))]
struct Buf([u8; 4096]);
static mut BUF: Buf = Buf([0; 4096]);

/// What a case must return.
#[derive(Clone, Copy)]
enum Expect {
    /// `-code`
    Err(i64),
    /// exactly this value
    Ok(i64),
    /// at least this value
    AtLeast(i64),
}

struct Ctx {
    features: u32,
}

impl Ctx {
    /// The feature bit (CPUID 0x40000001 EBX) a call needs, if any.
    fn offered(&self, nr: u64) -> bool {
        let bit = match nr {
            hv::MULTICALL => 0,
            hv::EXIT_STATS => 1,
            hv::CONSOLE_WRITE => 2,
            hv::IDLE => 3,
            _ => return true,
        };
        self.features & (1 << bit) != 0
    }

    /// `want` for call `nr`, or `-Unsupported` if the VM is not offered the call.
    fn adjust(&self, nr: u64, want: Expect) -> Expect {
        if self.offered(nr) {
            want
        } else {
            Expect::Err(hv::UNSUPPORTED)
        }
    }

    fn case(&self, name: &str, nr: u64, args: [u64; 4], want: Expect) {
        let want = self.adjust(nr, want);
        // SAFETY: every buffer argument is either outside guest RAM (refused), or one of our
        // statics BUF/BATCH, which the hypervisor may write (EXIT_STATS, MULTICALL results).
        match unsafe { hv::call(nr, args) } {
            Err(f) => fail(name, format_args!("VMCALL raised {f}")),
            Ok(got) => judge(name, got, want),
        }
    }
}

fn judge(name: &str, got: i64, want: Expect) {
    let ok = match want {
        Expect::Err(code) => got == -code,
        Expect::Ok(v) => got == v,
        Expect::AtLeast(v) => got >= v,
    };
    if ok {
        pass(name);
    } else {
        match want {
            Expect::Err(code) => fail(name, format_args!("returned {got}, expected -{code}")),
            Expect::Ok(v) => fail(name, format_args!("returned {got}, expected {v}")),
            Expect::AtLeast(v) => fail(name, format_args!("returned {got}, expected >= {v}")),
        }
    }
}

fn main(ram: u64, _vm_index: u64) -> ! {
    use Expect::{AtLeast, Err as E, Ok as V};
    trap::init();
    report::start("hostile-bad-hypercalls");
    let info = cpu::cpuid(hv::CPUID_INFO, 0);
    guest_rt::say!("features={:#x} max-batch={}", info.ebx, info.ecx);
    let c = Ctx { features: info.ebx };
    let buf = core::ptr::addr_of_mut!(BUF) as u64;
    let batch = core::ptr::addr_of_mut!(BATCH) as u64;
    let (nop, con, mc, idle, st) = (
        hv::NOP,
        hv::CONSOLE_WRITE,
        hv::MULTICALL,
        hv::IDLE,
        hv::EXIT_STATS,
    );
    let unknown = E(hv::UNKNOWN_CALL);
    let bad_addr = E(hv::BAD_ADDRESS);
    let bad_len = E(hv::BAD_LENGTH);
    let bad_arg = E(hv::BAD_ARGUMENT);
    let too_large = E(hv::TOO_LARGE);

    // Unassigned numbers: checked before anything else, whatever the arguments.
    c.case("unknown-7", 7, [0; 4], unknown);
    c.case("unknown-0xdead", 0xdead, [0; 4], unknown);
    c.case("unknown-0xffffffff", 0xffff_ffff, [0; 4], unknown);
    c.case("unknown-nop-high-bits", 1 << 32 | nop, [0; 4], unknown);
    c.case("unknown-u64-max", u64::MAX, [0; 4], unknown);
    c.case(
        "unknown-garbage-args",
        0x7777,
        [u64::MAX, 1, 2, NON_CANONICAL],
        unknown,
    );

    // Reserved arguments must be 0.
    c.case("nop-arg0", nop, [1, 0, 0, 0], bad_arg);
    c.case("nop-arg3", nop, [0, 0, 0, u64::MAX], bad_arg);
    c.case("version-arg1", hv::VERSION, [0, 1, 0, 0], bad_arg);

    // CONSOLE_WRITE: TooLarge, then BadAddress, then BadArgument.
    c.case("console-ram-end", con, [ram, 16, 0, 0], bad_addr);
    c.case(
        "console-straddle-ram-end",
        con,
        [ram - 8, 16, 0, 0],
        bad_addr,
    );
    c.case("console-u64-max", con, [u64::MAX, 16, 0, 0], bad_addr);
    c.case("console-wrap", con, [u64::MAX - 7, 16, 0, 0], bad_addr);
    c.case(
        "console-non-canonical",
        con,
        [NON_CANONICAL, 16, 0, 0],
        bad_addr,
    );
    c.case("console-mmio", con, [VIRTIO_MMIO, 16, 0, 0], bad_addr);
    c.case("console-4gib", con, [GIB4, 16, 0, 0], bad_addr);
    c.case("console-len-4097", con, [buf, 4097, 0, 0], too_large);
    c.case("console-len-u64-max", con, [buf, u64::MAX, 0, 0], too_large);
    c.case(
        "console-len-u64-max-gpa-u64-max",
        con,
        [u64::MAX, u64::MAX, 0, 0],
        too_large,
    );
    c.case("console-len-0-gpa-0", con, [0, 0, 0, 0], V(0));
    c.case("console-len-0-gpa-u64-max", con, [u64::MAX, 0, 0, 0], V(0));
    c.case("console-arg2", con, [buf, 1, 1, 0], bad_arg);

    // EXIT_STATS: BadLength, then BadAddress, then BadArgument.
    c.case("stats-len-8", st, [buf, 8, 0, 0], bad_len);
    c.case("stats-len-23", st, [buf, 23, 0, 0], bad_len);
    c.case("stats-ram-end", st, [ram, 4096, 0, 0], bad_addr);
    c.case(
        "stats-straddle-ram-end",
        st,
        [ram - 16, 4096, 0, 0],
        bad_addr,
    );
    c.case("stats-u64-max", st, [u64::MAX, 4096, 0, 0], bad_addr);
    c.case(
        "stats-non-canonical",
        st,
        [NON_CANONICAL, 4096, 0, 0],
        bad_addr,
    );
    c.case("stats-mmio", st, [VIRTIO_MMIO, 4096, 0, 0], bad_addr);
    c.case("stats-size-query", st, [0, 0, 0, 0], AtLeast(24));
    c.case("stats-arg2", st, [buf, 4096, 1, 0], bad_arg);

    // IDLE: only modes 0 and 1.
    c.case("idle-mode-2", idle, [2, 0, 0, 0], bad_arg);
    c.case("idle-mode-u64-max", idle, [u64::MAX, 0, 0, 0], bad_arg);
    c.case("idle-arg1", idle, [0, 1, 0, 0], bad_arg);

    // MULTICALL: the call's own arguments.
    c.case("multicall-count-0", mc, [batch, 0, 0, 0], bad_len);
    c.case("multicall-count-129", mc, [batch, 129, 0, 0], too_large);
    c.case("multicall-count-1000", mc, [batch, 1000, 0, 0], too_large);
    c.case(
        "multicall-count-u64-max",
        mc,
        [batch, u64::MAX, 0, 0],
        too_large,
    );
    c.case("multicall-misaligned", mc, [batch + 8, 1, 0, 0], bad_arg);
    c.case("multicall-ram-end", mc, [ram, 1, 0, 0], bad_addr);
    c.case(
        "multicall-straddle-ram-end",
        mc,
        [ram - 32, 2, 0, 0],
        bad_addr,
    );
    c.case("multicall-u64-max", mc, [!31, 1, 0, 0], bad_addr);
    c.case(
        "multicall-non-canonical",
        mc,
        [NON_CANONICAL, 1, 0, 0],
        bad_addr,
    );
    c.case("multicall-mmio", mc, [VIRTIO_MMIO, 1, 0, 0], bad_addr);
    c.case("multicall-arg2", mc, [batch, 1, 1, 0], bad_arg);
    c.case("multicall-128-nops", mc, [batch, 128, 0, 0], V(128));

    // A batch of bad entries: each gets its own error, the batch runs to the end.
    let entries: [(Entry, Expect); 12] = [
        (Entry::new(nop, 0, 0), V(0)),
        (Entry::new(0xdead, 0, 0), unknown),
        (Entry::new(nop, 1, 0), bad_arg),
        (Entry::new(mc, batch, 1), E(hv::NESTED)),
        (Entry::new(con, ram, 16), bad_addr),
        (Entry::new(st, buf, 8), bad_len),
        (Entry::new(hv::VERSION, 0, 0), V(hv::ABI_VERSION as i64)),
        (Entry::new(idle, 7, 0), bad_arg),
        (Entry::new(u64::MAX, u64::MAX, u64::MAX), unknown),
        (Entry::new(con, buf, 5000), too_large),
        (Entry::new(mc, 0, 0), E(hv::NESTED)),
        (Entry::new(1 << 32 | nop, 0, 0), unknown),
    ];
    // SAFETY: BATCH is ours; nothing else references it while the hypervisor writes results.
    let slots = unsafe { &mut (*core::ptr::addr_of_mut!(BATCH)).0 };
    for (slot, (e, _)) in slots.iter_mut().zip(entries.iter()) {
        *slot = *e;
    }
    c.case("multicall-bad-entries", mc, [batch, 12, 0, 0], V(12));
    if c.offered(mc) {
        let mut name = [0u8; 32];
        for (i, (e, want)) in entries.iter().enumerate() {
            // The nested MULTICALL is refused as an entry whatever the feature bits.
            let want = if e.call == mc {
                *want
            } else {
                c.adjust(e.call, *want)
            };
            // SAFETY: as above; the call has returned, the hypervisor no longer writes.
            let got = unsafe { (*core::ptr::addr_of!(BATCH)).0[i].result };
            judge(entry_name(&mut name, i), got, want);
        }
    }

    // The dispatcher still works after all that.
    c.case("nop-after-garbage", nop, [0; 4], V(0));
    report::done()
}

/// `multicall-entry-<i>`.
fn entry_name(buf: &mut [u8; 32], i: usize) -> &str {
    const P: &[u8] = b"multicall-entry-";
    buf[..P.len()].copy_from_slice(P);
    let mut n = P.len();
    if i >= 10 {
        buf[n] = b'0' + (i / 10) as u8;
        n += 1;
    }
    buf[n] = b'0' + (i % 10) as u8;
    core::str::from_utf8(&buf[..n + 1]).unwrap_or("?")
}
