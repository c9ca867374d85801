//! Exit statistics per VM: for every basic exit reason, how many exits and how many TSC ticks
//! were spent handling them (from VM exit to the next VM entry), plus counters that are not
//! exit reasons (unclaimed ports, injected interrupts). Printed when a VM stops and readable by
//! the guest through the EXIT_STATS hypercall.

use core::fmt;
use vmx::exit::ExitReason;

/// Basic exit reasons are 16-bit; the SDM defines 0..=79 today. Unknown ones share a slot.
pub const REASON_SLOTS: usize = 80;
const OTHER_SLOT: usize = REASON_SLOTS;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonStats {
    pub count: u64,
    pub ticks: u64,
}

/// Counters of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStats {
    reasons: [ReasonStats; REASON_SLOTS + 1],
    pub total: ReasonStats,
    /// The longest handling of one exit (TSC ticks): the worst-case exit latency.
    pub worst: u64,
    /// Kicks (IPIs from other CPUs) taken while in the guest, and the ticks from sending each
    /// to its exit here, summed and the longest.
    pub kicks: ReasonStats,
    pub kick_worst: u64,
    /// Slices a pool vCPU ran on a different CPU than its previous one.
    pub migrations: u64,
    pub unclaimed_port_accesses: u64,
    pub interrupts_injected: u64,
    pub exceptions_injected: u64,
    pub hypercalls: u64,
    pub multicall_operations: u64,
    pub mmio_accesses: u64,
    /// Events whose delivery an exit interrupted, delivered again (SDM Vol. 3C §28.2.4).
    pub events_reinjected: u64,
    /// Host interrupts taken as external-interrupt exits and ended at their controller,
    /// spurious ones (no EOI due), and ones whose controller could not be reached.
    pub host_interrupts_ended: u64,
    pub host_interrupts_spurious: u64,
    pub host_interrupts_unended: u64,
    /// Guest local APIC register accesses that exited (xAPIC MMIO, x2APIC MSRs, APIC-write
    /// and APIC-access exits), the EOIs among them (an EOI-induced exit included), and
    /// start-up IPIs that started this vCPU.
    pub apic_accesses: u64,
    pub apic_eoi_exits: u64,
    pub startups: u64,
    /// Exits that went back into the guest by the fast path (counted in their reasons too):
    /// a simple exit with no deadline passed skips the pre-entry work.
    pub fast_resumes: u64,
    /// The fast re-entries of exits answered before the VM's lock was taken (the quick path:
    /// CPUID, the stateless hypercalls).
    pub quick_exits: u64,
    /// MMIO instructions whose decode the vCPU's decode cache answered (vm::insn::DecodeCache).
    pub mmio_decode_hits: u64,
}

impl Default for ExitStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitStats {
    pub const fn new() -> Self {
        ExitStats {
            reasons: [ReasonStats { count: 0, ticks: 0 }; REASON_SLOTS + 1],
            total: ReasonStats { count: 0, ticks: 0 },
            worst: 0,
            kicks: ReasonStats { count: 0, ticks: 0 },
            kick_worst: 0,
            migrations: 0,
            unclaimed_port_accesses: 0,
            interrupts_injected: 0,
            exceptions_injected: 0,
            hypercalls: 0,
            multicall_operations: 0,
            mmio_accesses: 0,
            events_reinjected: 0,
            host_interrupts_ended: 0,
            host_interrupts_spurious: 0,
            host_interrupts_unended: 0,
            apic_accesses: 0,
            apic_eoi_exits: 0,
            startups: 0,
            fast_resumes: 0,
            quick_exits: 0,
            mmio_decode_hits: 0,
        }
    }

    fn slot(basic_reason: u16) -> usize {
        let r = usize::from(basic_reason);
        if r < REASON_SLOTS {
            r
        } else {
            OTHER_SLOT
        }
    }

    /// Records one exit with the basic reason number and the ticks it took.
    ///
    /// Every exit runs this, the quick ones too: the sums wrap instead of saturating or
    /// checking (one instruction each, issue 14), which they never do — a count of one exit
    /// per TSC tick and a sum of ticks no larger than the TSC's own advance take centuries
    /// to pass 2^64.
    #[inline]
    pub fn record(&mut self, basic_reason: u16, ticks: u64) {
        let s = &mut self.reasons[Self::slot(basic_reason)];
        s.count = s.count.wrapping_add(1);
        s.ticks = s.ticks.wrapping_add(ticks);
        self.total.count = self.total.count.wrapping_add(1);
        self.total.ticks = self.total.ticks.wrapping_add(ticks);
        self.worst = self.worst.max(ticks);
    }

    /// Counts one quick exit (docs/architecture.md, "The quick path"): a fast re-entry
    /// that never reached the full path; wrapping as [`record`](Self::record).
    #[inline]
    pub fn record_quick(&mut self) {
        self.fast_resumes = self.fast_resumes.wrapping_add(1);
        self.quick_exits = self.quick_exits.wrapping_add(1);
    }

    /// Records one kick received `ticks` after it was sent.
    pub fn record_kick(&mut self, ticks: u64) {
        self.kicks.count += 1;
        self.kicks.ticks = self.kicks.ticks.saturating_add(ticks);
        self.kick_worst = self.kick_worst.max(ticks);
    }

    /// Adds `other`'s counters to these (a VM's report sums its vCPUs').
    pub fn merge(&mut self, other: &ExitStats) {
        for (a, b) in self.reasons.iter_mut().zip(other.reasons.iter()) {
            a.count += b.count;
            a.ticks = a.ticks.saturating_add(b.ticks);
        }
        self.total.count += other.total.count;
        self.total.ticks = self.total.ticks.saturating_add(other.total.ticks);
        self.worst = self.worst.max(other.worst);
        self.kicks.count += other.kicks.count;
        self.kicks.ticks = self.kicks.ticks.saturating_add(other.kicks.ticks);
        self.kick_worst = self.kick_worst.max(other.kick_worst);
        self.migrations += other.migrations;
        self.unclaimed_port_accesses = self
            .unclaimed_port_accesses
            .max(other.unclaimed_port_accesses);
        self.interrupts_injected += other.interrupts_injected;
        self.exceptions_injected += other.exceptions_injected;
        self.hypercalls += other.hypercalls;
        self.multicall_operations += other.multicall_operations;
        self.mmio_accesses += other.mmio_accesses;
        self.events_reinjected += other.events_reinjected;
        self.host_interrupts_ended += other.host_interrupts_ended;
        self.host_interrupts_spurious += other.host_interrupts_spurious;
        self.host_interrupts_unended += other.host_interrupts_unended;
        self.apic_accesses += other.apic_accesses;
        self.apic_eoi_exits += other.apic_eoi_exits;
        self.startups += other.startups;
        self.fast_resumes += other.fast_resumes;
        self.quick_exits += other.quick_exits;
        self.mmio_decode_hits += other.mmio_decode_hits;
    }

    /// The counters of one basic reason.
    pub fn get(&self, basic_reason: u16) -> ReasonStats {
        self.reasons[Self::slot(basic_reason)]
    }

    /// Every reason with at least one exit: (basic reason number, counters); unknown reasons
    /// (≥ 80) are summed under 0xFFFF.
    pub fn nonzero(&self) -> impl Iterator<Item = (u16, ReasonStats)> + '_ {
        self.reasons
            .iter()
            .enumerate()
            .filter(|(_, s)| s.count > 0)
            .map(|(i, s)| (if i == OTHER_SLOT { 0xFFFF } else { i as u16 }, *s))
    }
}

fn reason_name(r: u16) -> &'static str {
    if r == 0xFFFF {
        "other"
    } else {
        ExitReason::from_basic(r).description()
    }
}

/// The table printed at VM stop: one `exits: <reason> count=<n> ticks=<t> avg=<a>` line per
/// reason, then totals and the other counters.
impl fmt::Display for ExitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (r, s) in self.nonzero() {
            writeln!(
                f,
                "exits: {:<22} count={} ticks={} avg={}",
                reason_name(r),
                s.count,
                s.ticks,
                s.ticks / s.count.max(1)
            )?;
        }
        writeln!(
            f,
            "exits: {:<22} count={} ticks={} worst={}",
            "total", self.total.count, self.total.ticks, self.worst
        )?;
        if self.kicks.count > 0 {
            writeln!(
                f,
                "exits: kicks count={} latency avg={} worst={}",
                self.kicks.count,
                self.kicks.ticks / self.kicks.count,
                self.kick_worst
            )?;
        }
        write!(
            f,
            "exits: hypercalls={} multicall-ops={} mmio={} unclaimed-ports={} interrupts-injected={} exceptions-injected={} events-reinjected={} host-irqs-ended={} host-irqs-spurious={} host-irqs-unended={} migrations={} fast-path={} quick={} mmio-decode-hits={}",
            self.hypercalls,
            self.multicall_operations,
            self.mmio_accesses,
            self.unclaimed_port_accesses,
            self.interrupts_injected,
            self.exceptions_injected,
            self.events_reinjected,
            self.host_interrupts_ended,
            self.host_interrupts_spurious,
            self.host_interrupts_unended,
            self.migrations,
            self.fast_resumes,
            self.quick_exits,
            self.mmio_decode_hits
        )?;
        if self.apic_accesses + self.startups > 0 {
            write!(
                f,
                "\nexits: apic accesses={} eoi-exits={} startups={}",
                self.apic_accesses, self.apic_eoi_exits, self.startups
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_prints() {
        let mut s = ExitStats::new();
        s.record(10, 100); // CPUID
        s.record(10, 300);
        s.record(12, 50); // HLT
        s.record(999, 7);
        assert_eq!(
            s.get(10),
            ReasonStats {
                count: 2,
                ticks: 400
            }
        );
        assert_eq!(s.get(999), ReasonStats { count: 1, ticks: 7 });
        assert_eq!(
            s.total,
            ReasonStats {
                count: 4,
                ticks: 457
            }
        );
        let text = alloc::format!("{s}");
        assert!(text.contains("count=2 ticks=400 avg=200"), "{text}");
        assert!(text.contains("other"), "{text}");
        assert!(text.contains("total"), "{text}");
        assert_eq!(s.nonzero().count(), 3);
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn a_vms_statistics_add_up_its_vcpus_and_keep_the_worst() {
        let mut a = ExitStats::new();
        a.record(10, 700);
        a.record(10, 900);
        a.hypercalls = 2;
        a.record_kick(800);
        let mut b = ExitStats::new();
        b.record(10, 650);
        b.record(12, 4000);
        b.record_kick(1200);
        let mut vm = ExitStats::new();
        vm.merge(&a);
        vm.merge(&b);
        assert_eq!(
            vm.get(10),
            ReasonStats {
                count: 3,
                ticks: 2250
            }
        );
        assert_eq!(vm.get(12).count, 1);
        assert_eq!(
            vm.total,
            ReasonStats {
                count: 4,
                ticks: 6250
            }
        );
        assert_eq!(vm.worst, 4000);
        assert_eq!(vm.hypercalls, 2);
        assert_eq!(
            (vm.kicks.count, vm.kicks.ticks, vm.kick_worst),
            (2, 2000, 1200)
        );
        let text = alloc::format!("{vm}");
        assert!(text.contains("count=4 ticks=6250 worst=4000"), "{text}");
        assert!(
            text.contains("exits: kicks count=2 latency avg=1000 worst=1200"),
            "{text}"
        );
    }
}
