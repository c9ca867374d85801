//! Fuzzes the configuration parser (`vm::config`): any bytes give a configuration or an error
//! with a position inside the file, never a panic; an accepted configuration respects every
//! documented limit (docs/configuration.md).
//!
//! Run with `cargo fuzz run config` from `vm/` (e.g. `cargo fuzz run config -- -max_total_time=20`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm::config::*;

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Ok(c) => {
            assert!(!c.vms.is_empty() && c.vms.len() <= MAX_VMS);
            assert!((MIN_TIMESLICE..=MAX_TIMESLICE).contains(&c.hypervisor.timeslice));
            for v in &c.vms {
                assert!((1..=32).contains(&v.name.len()));
                assert!((MIN_MEMORY..=MAX_MEMORY).contains(&v.memory));
                assert_eq!(v.memory % MEMORY_ALIGN, 0);
                assert!(v.devices.len() <= MAX_DEVICES);
                assert!((1..=MAX_VCPUS).contains(&v.vcpus));
                if let Some(cpus) = &v.cpus {
                    assert!(!cpus.is_empty() && cpus.iter().all(|c| *c <= MAX_CPU_INDEX));
                    assert!(cpus.iter().enumerate().all(|(i, c)| !cpus[..i].contains(c)));
                }
                if v.dedicated {
                    let cpus = v.cpus.as_ref().expect("dedicated without cpus");
                    assert!(cpus.len() >= v.vcpus as usize);
                    for w in c.vms.iter().filter(|w| w.name != v.name) {
                        let theirs = w.cpus.as_deref().unwrap_or_default();
                        assert!(cpus.iter().all(|cpu| !theirs.contains(cpu)));
                    }
                }
                assert!((MIN_CONSOLE_BUFFER..=MAX_CONSOLE_BUFFER).contains(&v.console_buffer));
                assert!((MIN_CONSOLE_RATE..=MAX_CONSOLE_RATE).contains(&v.console_rate));
                if v.kind != GuestKind::Linux {
                    assert!(v.cmdline.is_none() && v.initrd.is_none());
                }
                for d in &v.devices {
                    if let DeviceConfig::VirtioBlk {
                        source: DiskSource::Empty { size },
                        ..
                    } = d
                    {
                        assert!(*size >= SECTOR_SIZE && size % SECTOR_SIZE == 0);
                    }
                }
            }
        }
        Err(e) => {
            let lines = data.split(|b| *b == b'\n').count();
            assert!(e.line <= lines, "{e} (file has {lines} lines)");
            assert_eq!(e.line == 0, e.column == 0);
            let _ = e.to_string();
        }
    }
});
