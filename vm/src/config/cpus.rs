//! `vcpus`, `cpus` and `dedicated` in `[vm.NAME]`: their values, and the placement conflicts
//! between VMs that the file alone shows (a CPU given to two dedicated VMs, a dedicated CPU
//! in another VM's `cpus`). What needs the machine (does CPU 3 exist? is a CPU left for the
//! pool?) is checked at boot by [`crate::placement`].

use super::check::bad;
use super::error::{at, ConfigError, ConfigErrorKind as K};
use super::{VmConfig, MAX_CPU_INDEX, MAX_VCPUS};
use alloc::vec::Vec;
use core::ops::Range;
use toml::Spanned;

/// The three keys of one VM, checked, with the span of each `cpus` entry (for the conflicts
/// between VMs).
#[derive(Debug)]
pub(super) struct CpuKeys {
    pub vcpus: u32,
    pub cpus: Option<Vec<u32>>,
    pub dedicated: bool,
    pub spans: Vec<Range<usize>>,
}

const VCPUS_EXPECTED: &str = "a number of vCPUs from 1 to 16, e.g. 2";
const CPUS_EXPECTED: &str = "one or more physical CPU indexes from 0 to 255 (0 is the boot \
                             CPU), e.g. [1, 2]; leave `cpus` out to run on the shared pool";

pub(super) fn parse(
    text: &str,
    vm: &str,
    vcpus: Option<Spanned<i64>>,
    cpus: Option<Spanned<Vec<Spanned<i64>>>>,
    dedicated: Option<Spanned<bool>>,
) -> Result<CpuKeys, ConfigError> {
    let vcpus = match vcpus {
        None => 1,
        Some(v) => u32::try_from(*v.get_ref())
            .ok()
            .filter(|n| (1..=MAX_VCPUS).contains(n))
            .ok_or_else(|| bad(text, "vcpus", v.span(), VCPUS_EXPECTED))?,
    };
    let mut spans = Vec::new();
    let mut cpus_span = None;
    let cpus = match cpus {
        None => None,
        Some(list) => {
            let array_span = list.span();
            // The message quotes the whole array and points at the bad entry.
            let bad_at = |span: Range<usize>| {
                let mut e = bad(text, "cpus", array_span.clone(), CPUS_EXPECTED);
                (e.line, e.column) = super::error::line_column(text, span.start);
                e
            };
            if list.get_ref().is_empty() {
                return Err(bad_at(array_span.clone()));
            }
            let mut ids = Vec::new();
            for entry in list.get_ref() {
                let cpu = u32::try_from(*entry.get_ref())
                    .ok()
                    .filter(|c| *c <= MAX_CPU_INDEX)
                    .ok_or_else(|| bad_at(entry.span()))?;
                if ids.contains(&cpu) {
                    return Err(at(
                        text,
                        entry.span(),
                        K::DuplicateCpu { vm: vm.into(), cpu },
                    ));
                }
                ids.push(cpu);
                spans.push(entry.span());
            }
            cpus_span = Some(array_span);
            Some(ids)
        }
    };
    let dedicated = match dedicated {
        Some(d) if *d.get_ref() => {
            let Some(ids) = &cpus else {
                return Err(at(
                    text,
                    d.span(),
                    K::DedicatedWithoutCpus { vm: vm.into() },
                ));
            };
            if (ids.len() as u64) < u64::from(vcpus) {
                return Err(at(
                    text,
                    cpus_span.unwrap_or(d.span()),
                    K::DedicatedTooFewCpus {
                        vm: vm.into(),
                        vcpus,
                        cpus: ids.len(),
                    },
                ));
            }
            true
        }
        _ => false,
    };
    Ok(CpuKeys {
        vcpus,
        cpus,
        dedicated,
        spans,
    })
}

/// A dedicated VM owns every CPU in its `cpus`: no other VM may list one of them. The error
/// points at the entry of the later VM in the file.
pub(super) fn check_conflicts(
    text: &str,
    vms: &[(VmConfig, Vec<Range<usize>>)],
) -> Result<(), ConfigError> {
    for (j, (later, spans)) in vms.iter().enumerate() {
        let Some(later_cpus) = &later.cpus else {
            continue;
        };
        for (cpu, span) in later_cpus.iter().zip(spans) {
            let earlier = vms[..j].iter().map(|(vm, _)| vm).find(|vm| {
                (vm.dedicated || later.dedicated)
                    && vm.cpus.as_ref().is_some_and(|c| c.contains(cpu))
            });
            let Some(earlier) = earlier else { continue };
            let kind = if earlier.dedicated && later.dedicated {
                K::CpuDedicatedTwice {
                    cpu: *cpu,
                    first: earlier.name.clone(),
                    second: later.name.clone(),
                }
            } else if earlier.dedicated {
                K::CpuDedicatedAndShared {
                    cpu: *cpu,
                    dedicated: earlier.name.clone(),
                    other: later.name.clone(),
                }
            } else {
                K::CpuDedicatedAndShared {
                    cpu: *cpu,
                    dedicated: later.name.clone(),
                    other: earlier.name.clone(),
                }
            };
            return Err(at(text, span.clone(), kind));
        }
    }
    Ok(())
}
