//! The per-port bound on flooded frames (broadcast, multicast, unknown unicast): a token
//! bucket counted in TSC ticks, so a port may flood `burst` frames at once and then
//! `frames_per_second` on average. No division per frame: the bucket holds ticks of credit
//! and each flooded frame costs `tsc_hz / frames_per_second` of them.

/// How many flooded frames a port may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimit {
    /// Sustained rate.
    pub frames_per_second: u64,
    /// Frames allowed at once (the bucket's depth).
    pub burst: u64,
}

impl FloodLimit {
    /// The default: 100 frames per second, bursts of 32 (a guest's ARP and neighbour
    /// traffic never reaches it; a broadcast storm is cut to 100 frames a second per port).
    pub const DEFAULT: FloodLimit = FloodLimit {
        frames_per_second: 100,
        burst: 32,
    };
}

/// A token bucket in TSC ticks.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    credit: u64,
    last: u64,
    cost: u64,
    depth: u64,
}

impl TokenBucket {
    /// A full bucket for `limit` on a TSC of `tsc_hz`.
    pub fn new(limit: FloodLimit, tsc_hz: u64) -> Self {
        let cost = (tsc_hz / limit.frames_per_second.max(1)).max(1);
        let depth = cost.saturating_mul(limit.burst);
        TokenBucket {
            credit: depth,
            last: 0,
            cost,
            depth,
        }
    }

    /// Takes one frame's worth of credit at TSC `now`; false if the port is over its limit.
    pub fn take(&mut self, now: u64) -> bool {
        // The TSC may differ slightly between CPUs: time never runs backwards here.
        let earned = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.credit = self.credit.saturating_add(earned).min(self.depth);
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}
