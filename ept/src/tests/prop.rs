//! Random map/unmap/protect sequences checked against a reference model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::fake::{audit, new_ept, FakeEpt};
use crate::{Access, EptConfig, EptError, Gpa, Hpa, Invalidation, MemoryType};

const K4: u64 = 1 << 12;
const M2: u64 = 1 << 21;
const G1: u64 = 1 << 30;
/// The GPA window exercised: 0..8 GiB.
const WINDOW: u64 = 8 * G1;
const CAPACITY: usize = 1 << 14;

/// Reference model: runs of pages with a linear GPA→HPA relation, keyed by
/// start GPA: start → (end, hpa of start, access, memory type).
#[derive(Default, Debug)]
struct Model {
    runs: BTreeMap<u64, (u64, u64, Access, MemoryType)>,
}

impl Model {
    fn lookup(&self, a: u64) -> Option<(u64, Access, MemoryType)> {
        let (&s, &(e, h, acc, mt)) = self.runs.range(..=a).next_back()?;
        (a < e).then_some((h + (a - s), acc, mt))
    }

    fn first_mapped(&self, s: u64, e: u64) -> Option<u64> {
        if let Some((_, &(end, ..))) = self.runs.range(..=s).next_back() {
            if end > s {
                return Some(s);
            }
        }
        self.runs.range(s..e).next().map(|(&start, _)| start)
    }

    fn first_hole(&self, s: u64, e: u64) -> Option<u64> {
        let mut a = s;
        while a < e {
            match self.runs.range(..=a).next_back() {
                Some((_, &(end, ..))) if end > a => a = end,
                _ => return Some(a),
            }
        }
        None
    }

    /// Splits the run containing `a` (if any) so that a run starts at `a`.
    fn split_at(&mut self, a: u64) {
        if let Some((&s, &(e, h, acc, mt))) = self.runs.range(..a).next_back() {
            if e > a {
                self.runs.insert(s, (a, h, acc, mt));
                self.runs.insert(a, (e, h + (a - s), acc, mt));
            }
        }
    }

    fn insert(&mut self, s: u64, e: u64, h: u64, acc: Access, mt: MemoryType) {
        self.runs.insert(s, (e, h, acc, mt));
    }

    /// Removes `[s, e)`; returns whether anything was mapped there.
    fn remove(&mut self, s: u64, e: u64) -> bool {
        self.split_at(s);
        self.split_at(e);
        let keys: Vec<u64> = self.runs.range(s..e).map(|(&k, _)| k).collect();
        for k in &keys {
            self.runs.remove(k);
        }
        !keys.is_empty()
    }

    /// Sets the access of `[s, e)` (fully mapped); returns whether any changed.
    fn protect(&mut self, s: u64, e: u64, acc: Access) -> bool {
        self.split_at(s);
        self.split_at(e);
        let mut changed = false;
        for (_, run) in self.runs.range_mut(s..e) {
            changed |= run.2 != acc;
            run.2 = acc;
        }
        changed
    }

    /// Upper bound on the tables a hierarchy without empty tables may hold:
    /// root + one per 512 GiB, 1 GiB and 2 MiB region containing a mapping.
    fn table_bound(&self) -> usize {
        let mut regions = BTreeSet::new();
        for (&s, &(e, ..)) in &self.runs {
            for (shift, tag) in [(39, 3u8), (30, 2), (21, 1)] {
                for r in (s >> shift)..=((e - 1) >> shift) {
                    regions.insert((tag, r));
                }
            }
        }
        1 + regions.len()
    }
}

#[derive(Clone, Debug)]
enum Step {
    Map {
        gpa: u64,
        len: u64,
        hpa: u64,
        access: Access,
        memtype: MemoryType,
    },
    Unmap {
        gpa: u64,
        len: u64,
    },
    Protect {
        gpa: u64,
        len: u64,
        access: Access,
    },
    Reclaim,
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::READ),
        Just(Access::RW),
        Just(Access::RX),
        Just(Access::RWX)
    ]
}

fn memtype() -> impl Strategy<Value = MemoryType> {
    prop_oneof![
        Just(MemoryType::WriteBack),
        Just(MemoryType::Uncacheable),
        Just(MemoryType::WriteCombining),
        Just(MemoryType::WriteThrough),
        Just(MemoryType::WriteProtected),
    ]
}

/// A (gpa, len) range in the window: random 4 KiB ranges, or 2 MiB / 1 GiB
/// aligned chunks so that large pages occur.
fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        3 => (0..WINDOW / K4, 1..=1024u64).prop_map(|(p, n)| (p * K4, n * K4)),
        3 => (0..WINDOW / M2, 1..=4u64).prop_map(|(p, n)| (p * M2, n * M2)),
        1 => (0..WINDOW / G1, 1..=2u64).prop_map(|(p, n)| (p * G1, n * G1)),
        1 => (0..WINDOW / M2, 1..=700u64).prop_map(|(p, n)| (p * M2 - (p.min(1) * K4), n * M2 + K4)),
    ]
    .prop_map(|(g, l)| (g, l.min(WINDOW - g).max(K4)))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (range(), prop_oneof![(0..8u64).prop_map(|k| k * G1), (0..(1u64 << 20)).prop_map(|k| k * K4)], access(), memtype())
            .prop_map(|((gpa, len), off, access, memtype)| Step::Map { gpa, len, hpa: gpa + off, access, memtype }),
        3 => range().prop_map(|(gpa, len)| Step::Unmap { gpa, len }),
        2 => (range(), access()).prop_map(|((gpa, len), access)| Step::Protect { gpa, len, access }),
        1 => Just(Step::Reclaim),
    ]
}

fn config() -> impl Strategy<Value = EptConfig> {
    (any::<bool>(), any::<bool>()).prop_map(|(page_2m, page_1g)| EptConfig {
        page_2m: page_2m || page_1g,
        page_1g,
        ..EptConfig::default()
    })
}

fn check_point(ept: &FakeEpt, model: &Model, a: u64) -> Result<(), TestCaseError> {
    if a >= WINDOW + G1 {
        return Ok(());
    }
    let got = ept
        .translate(Gpa::new(a))
        .map(|t| (t.hpa.as_u64(), t.access, t.memory_type));
    prop_assert_eq!(got, model.lookup(a), "translate({:#x})", a);
    Ok(())
}

fn check(
    ept: &FakeEpt,
    model: &Model,
    probes: &[u64],
    s: u64,
    e: u64,
) -> Result<(), TestCaseError> {
    for &a in probes {
        check_point(ept, model, a)?;
    }
    for a in [s.wrapping_sub(1), s, s + 0x7ff, e - 1, e] {
        check_point(ept, model, a)?;
    }
    for (&rs, &(re, ..)) in &model.runs {
        for a in [rs.wrapping_sub(1), rs, (rs + re) / 2, re - 1, re] {
            check_point(ept, model, a)?;
        }
    }
    let tables = audit(ept);
    prop_assert_eq!(tables, ept.table_frames());
    prop_assert!(
        tables <= model.table_bound(),
        "{} tables > bound {}",
        tables,
        model.table_bound()
    );
    prop_assert_eq!(
        ept.allocator().outstanding(),
        ept.table_frames() + ept.pending_frames()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(
        config in config(),
        steps in proptest::collection::vec(step(), 1..40),
        probes in proptest::collection::vec(0..WINDOW, 32),
    ) {
        let mut ept = new_ept(config, CAPACITY);
        let mut model = Model::default();
        for step in steps {
            let (s, e) = match step {
                Step::Map { gpa, len, hpa, access, memtype } => {
                    let r = ept.map(Gpa::new(gpa), Hpa::new(hpa), len, access, memtype);
                    match model.first_mapped(gpa, gpa + len) {
                        Some(first) => prop_assert_eq!(r, Err(EptError::AlreadyMapped(Gpa::new(first)))),
                        None => {
                            prop_assert_eq!(r, Ok(Invalidation::None));
                            model.insert(gpa, gpa + len, hpa, access, memtype);
                        }
                    }
                    (gpa, gpa + len)
                }
                Step::Unmap { gpa, len } => {
                    let r = ept.unmap(Gpa::new(gpa), len);
                    let removed = model.remove(gpa, gpa + len);
                    let expect = if removed { Invalidation::SingleContext(ept.eptp()) } else { Invalidation::None };
                    prop_assert_eq!(r, Ok(expect));
                    (gpa, gpa + len)
                }
                Step::Protect { gpa, len, access } => {
                    let r = ept.protect(Gpa::new(gpa), len, access);
                    match model.first_hole(gpa, gpa + len) {
                        Some(hole) => prop_assert_eq!(r, Err(EptError::NotMapped(Gpa::new(hole)))),
                        None => {
                            let changed = model.protect(gpa, gpa + len, access);
                            let r = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                            if changed {
                                prop_assert!(r.is_required());
                            }
                        }
                    }
                    (gpa, gpa + len)
                }
                Step::Reclaim => {
                    let pending = ept.pending_frames();
                    prop_assert_eq!(ept.reclaim_tables(), pending);
                    (0, K4)
                }
            };
            check(&ept, &model, &probes, s, e)?;
        }
        let _ = ept.unmap(Gpa::new(0), WINDOW + G1).map_err(|e| TestCaseError::fail(e.to_string()))?;
        ept.reclaim_tables();
        prop_assert_eq!(ept.table_frames(), 1);
        prop_assert_eq!(ept.allocator().outstanding(), 1);
        let (alloc, _) = ept.destroy();
        prop_assert_eq!(alloc.outstanding(), 0);
    }
}
