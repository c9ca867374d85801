//! Pacing a guest's reboots (`on-reboot = "restart"`): each restart rebuilds the VM on the
//! console-draining CPU (RAM zeroed, image loaded again), which no VM's time slice pays for.
//! A guest that resets as soon as it starts could keep that CPU rebuilding it; so the next
//! reboot-driven rebuild of a VM waits until the CPU has spent at most
//! 1 / [`REBUILD_SHARE_DIVISOR`] of its time since on that VM's rebuilds. An operator's
//! `start`/`restart` is not paced.

/// A VM's reboot-driven rebuilds take at most 1/10 of the rebuilding CPU's time.
pub const REBUILD_SHARE_DIVISOR: u64 = 10;

/// When a VM's next reboot may rebuild it (TSC ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebootPacing {
    next_at: u64,
}

impl RebootPacing {
    /// Whether a reboot-driven rebuild may run at `now`.
    pub fn allows(&self, now: u64) -> bool {
        now >= self.next_at
    }

    /// A rebuild ran from `start` to `end`: the next waits `(divisor - 1)` times its cost.
    pub fn rebuilt(&mut self, start: u64, end: u64) {
        let cost = end.saturating_sub(start);
        self.next_at = end.saturating_add(cost.saturating_mul(REBUILD_SHARE_DIVISOR - 1));
    }

    /// The tick from which the next rebuild is allowed.
    pub fn next_at(&self) -> u64 {
        self.next_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reboot_is_not_delayed() {
        assert!(RebootPacing::default().allows(0));
    }

    #[test]
    fn rebuilds_take_at_most_a_tenth_of_the_cpu() {
        let mut p = RebootPacing::default();
        p.rebuilt(1_000, 2_000);
        assert!(!p.allows(10_999));
        assert!(p.allows(11_000));
        // Back to back as fast as allowed: 1,000 ticks of rebuild per 10,000.
        let (mut now, mut busy) = (11_000u64, 1_000u64);
        for _ in 0..100 {
            assert!(p.allows(now));
            p.rebuilt(now, now + 1_000);
            busy += 1_000;
            now = p.next_at();
        }
        assert_eq!(busy * REBUILD_SHARE_DIVISOR, now - 1_000);
    }

    #[test]
    fn a_clock_at_its_limit_saturates() {
        let mut p = RebootPacing::default();
        p.rebuilt(0, u64::MAX / 2);
        assert_eq!(p.next_at(), u64::MAX);
        assert!(!p.allows(u64::MAX - 1));
    }
}
