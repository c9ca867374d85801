//! The store benchmark rows (issue 15, `bench --only store`): the Linux test guest's
//! `blkbench` check (O_DIRECT `dd` on its raw /dev/vda: sequential and random, 4 KiB and
//! 64 KiB, reads and writes) on a virtio-blk RAM disk and on a store disk on Bochs's
//! ata0-slave (PIIX bus-master DMA), in virtual time: each pattern is bracketed by
//! `blk-bench BEGIN/END` lines whose console timestamps are TSC ticks (50 MHz: one per
//! emulated instruction). Exits per MiB: the bench run's total exits minus those of the same
//! VM booted without the bench, over the MiB the bench moved (all patterns together).
//! Parsers are host-tested; the runs need Bochs.

use super::figures::{field, line_with};
use super::irq::total_exits;
use super::{bundle_image, Figure, Options};
use crate::bochs::IPS;
use crate::error::{io, BootError};
use crate::run::{run, Platform, RunOutcome, RunSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SEC_STORE: &str = "Store disks (virtio-blk, Linux dd O_DIRECT)";

/// The guest's patterns, in the order it runs them (tests/guest/linux/init, check_blkbench).
pub const PATTERNS: [&str; 8] = [
    "seq-write-4k",
    "seq-read-4k",
    "seq-write-64k",
    "seq-read-64k",
    "rand-write-4k",
    "rand-read-4k",
    "rand-write-64k",
    "rand-read-64k",
];

/// Bochs derives a flat disk's geometry from its size: whole cylinders of 16 heads x 63
/// sectors keep every sector visible; 32 cylinders (15.75 MiB) hold a store with an 8 MiB disk.
const CYLINDER: u64 = 16 * 63 * 512;
const STORE_CYLINDERS: u64 = 32;

fn conf(disk: &str, checks: &str) -> String {
    format!(
        "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
         memory = \"64M\"\nconsole-timestamps = true\ncmdline = \"{}\"\n\
         [[vm.linux.virtio-blk]]\n{disk}\n",
        super::LINUX_CMDLINE.replace(
            "bulkhead.checks=workload",
            &format!("bulkhead.checks={checks}")
        )
    )
}

/// The RAM-disk VM, the store-disk VM (`disk = "bench"`), and the baseline (no bench).
pub fn ram_conf() -> String {
    conf("size = \"8M\"", "blkbench")
}
pub fn store_conf() -> String {
    conf("disk = \"bench\"", "blkbench")
}
pub fn baseline_conf() -> String {
    conf("size = \"8M\"", "none")
}

/// Bytes per second of pattern `name` in VM `vm`: its END line's `bytes=` over the ticks
/// between BEGIN and END, at `tsc_hz`.
pub fn throughput(transcript: &str, vm: &str, name: &str, tsc_hz: f64) -> Option<f64> {
    let begin =
        super::figures::ticks_of(transcript, vm, &format!("guest: blk-bench BEGIN {name}"))?;
    let end_needle = format!("guest: blk-bench END {name} ");
    let end = super::figures::ticks_of(transcript, vm, &end_needle)?;
    let bytes: f64 = field(line_with(transcript, &end_needle)?, "bytes")?
        .parse()
        .ok()?;
    let ticks = end.checked_sub(begin).filter(|&t| t > 0)?;
    Some(bytes / (ticks as f64 / tsc_hz))
}

/// Bytes all patterns moved (the END lines' `bytes=`).
pub fn bench_bytes(transcript: &str) -> Option<f64> {
    let mut sum = 0.0;
    for name in PATTERNS {
        let l = line_with(transcript, &format!("guest: blk-bench END {name} "))?;
        sum += field(l, "bytes")?.parse::<f64>().ok()?;
    }
    Some(sum)
}

/// (bench run's exits - baseline's) per MiB moved.
pub fn exits_per_mib(bench: &str, baseline: &str) -> Option<f64> {
    let extra = total_exits(bench, "linux")? - total_exits(baseline, "linux")?;
    Some(extra / (bench_bytes(bench)? / (1024.0 * 1024.0)))
}

/// The figures of the three runs (empty transcripts give missing rows).
pub fn store_figures(ram: &str, store: &str, baseline: &str) -> Vec<Figure> {
    let hz = IPS as f64;
    let mib = |v: Option<f64>| v.map(|b| b / (1024.0 * 1024.0));
    let mut out = Vec::new();
    for name in PATTERNS {
        for (backend, t) in [("RAM disk", ram), ("store disk (ATA DMA)", store)] {
            out.push(Figure::new(
                SEC_STORE,
                &format!("{name} on a {backend}"),
                mib(throughput(t, "linux", name, hz)),
                "MiB/s",
                "bytes / (TSC ticks between the guest's BEGIN and END lines / 50 MHz); random = one dd per request",
            ));
        }
    }
    for (backend, t) in [("RAM disk", ram), ("store disk (ATA DMA)", store)] {
        out.push(Figure::new(
            SEC_STORE,
            &format!("exits per MiB, all patterns, {backend}"),
            exits_per_mib(t, baseline),
            "exits/MiB",
            "(bench run's exits - the same VM booted without it) / MiB moved",
        ));
    }
    out
}

fn boot_with_store(o: &Options, image: &Path, drive: &Path) -> Result<RunOutcome, BootError> {
    let mut spec = RunSpec::new(Platform::Bochs, image);
    spec.cpu_model = o.cpu.clone();
    spec.megs = 512;
    spec.timeout = Duration::from_secs(1800);
    spec.drives = vec![drive.to_path_buf()];
    if o.verbose {
        eprintln!(
            "bench: running Linux blk-bench on a store disk in Bochs ({})",
            o.cpu
        );
    }
    let outcome = run(&spec)?;
    if o.verbose {
        eprintln!("bench: store disk: {}", outcome.summary());
    }
    Ok(outcome)
}

/// `bench --only store`.
pub fn run_only(o: &Options) -> Result<super::Report, BootError> {
    super::irq::only(o, |o| {
        let guest = super::linux_guest_dir()?;
        run_rows(
            o,
            &[guest.join("bzImage"), guest.join("initramfs.cpio.lz4")],
        )
    })
}

/// Runs the RAM-disk, store-disk and baseline sessions (Linux guest `files`).
pub fn run_rows(o: &Options, files: &[PathBuf]) -> Result<Vec<Figure>, BootError> {
    let ram = super::run_guest(o, "Linux blk-bench on a RAM disk", &ram_conf(), files, 1800)?;
    let baseline = super::run_guest(o, "Linux without blk-bench", &baseline_conf(), files, 900)?;
    let dir = tempfile::tempdir().map_err(io(
        "cannot create a temporary directory in",
        std::env::temp_dir(),
    ))?;
    let drive = dir.path().join("store.img");
    std::fs::File::create(&drive)
        .and_then(|f| f.set_len(STORE_CYLINDERS * CYLINDER))
        .map_err(io("cannot create", &drive))?;
    let d = drive.to_string_lossy().to_string();
    for args in [
        vec!["init".to_string(), d.clone()],
        vec![
            "create".into(),
            d.clone(),
            "bench".into(),
            "--size".into(),
            "8M".into(),
        ],
    ] {
        let mut out = Vec::new();
        let code = crate::disk::main(&args, &mut out)?;
        if code != 0 {
            return Err(super::other_err(format!(
                "bulkhead-boot disk {args:?}: {}",
                String::from_utf8_lossy(&out)
            )));
        }
    }
    let image = bundle_image(dir.path(), &store_conf(), files)?;
    let store = boot_with_store(o, &image, &drive)?;
    Ok(store_figures(
        &ram.transcript,
        &store.transcript,
        &baseline.transcript,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Status;

    fn transcript(scale: u64, exits: u64) -> String {
        let mut t = String::new();
        let mut at = 1_000_000u64;
        for name in PATTERNS {
            let bytes = if name.contains("64k") {
                1 << 20
            } else {
                1 << 18
            };
            t += &format!("[linux +{at}] guest: blk-bench BEGIN {name}\n");
            at += scale * 50_000; // scale ms at 50 MHz
            t += &format!("[linux +{at}] guest: blk-bench END {name} bytes={bytes}\n");
            at += 1000;
        }
        t += &format!("[  9] INFO  vm linux: exits: total count={exits} ticks=5\n");
        t
    }

    #[test]
    fn figures_from_begin_end_timestamps_and_exit_totals() {
        let ram = transcript(10, 30_000);
        let store = transcript(40, 50_000);
        let base = "[  9] INFO  vm linux: exits: total count=10000 ticks=5\n";
        // 1 MiB in 10 ms of virtual time: 100 MiB/s; the store run 4x slower.
        let t = throughput(&ram, "linux", "seq-read-64k", 50e6).unwrap();
        assert!((t / 1048576.0 - 100.0).abs() < 1e-9, "{t}");
        assert!(
            (throughput(&store, "linux", "seq-read-64k", 50e6).unwrap() / 1048576.0 - 25.0).abs()
                < 1e-9
        );
        // 4 x 1 MiB + 4 x 256 KiB = 5 MiB; 20000 and 40000 extra exits.
        assert_eq!(bench_bytes(&ram), Some(5.0 * 1048576.0));
        assert_eq!(exits_per_mib(&ram, base), Some(4000.0));
        assert_eq!(exits_per_mib(&store, base), Some(8000.0));
        let f = store_figures(&ram, &store, base);
        assert_eq!(f.len(), 18);
        assert!(f.iter().all(|x| x.status == Status::Measured), "{f:?}");
        assert_eq!(f[0].name, "seq-write-4k on a RAM disk");
        // A missing END line or transcript gives missing rows, not zeros.
        let cut = ram.replace("END rand-read-64k", "XXX");
        assert_eq!(throughput(&cut, "linux", "rand-read-64k", 50e6), None);
        assert_eq!(bench_bytes(&cut), None);
        assert!(store_figures("", "", "")
            .iter()
            .all(|x| x.status == Status::Missing));
    }
}
