//! The Debian rows (`bench --only debian`, issue 12): Debian 12's stock kernel and initramfs
//! (`scripts/build-debian-guest`) booted to its first userspace line, once under Bulkhead and
//! once by bare Bochs from a SYSLINUX disk (`scripts/bare-linux-image`), with the same kernel,
//! initramfs and command line, on one CPU and the same RAM. `bulkhead.stage1=stop` ends the
//! initramfs right after that line (a triple fault through `reboot=t`), before it needs the
//! VM's disks, so both machines do the same work.

use super::figures::{line_with, num, ticks_of};
use super::{boot, run_guest, Figure, Options};
use crate::error::{io, BootError};
use std::path::PathBuf;

pub const SEC_DEBIAN: &str = "Debian stock kernel";

/// The VM's (and the bare machine's) RAM.
const MEGS: u32 = 192;

/// Both runs' command line: Debian's `quiet` as its boot loader sets it, the TSC rate Bochs
/// really runs at (as [`super::LINUX_CMDLINE`]), and the stop after the first userspace line.
pub const DEBIAN_CMDLINE: &str = concat!(
    "console=ttyS0,115200 quiet panic=-1 reboot=t tsc=reliable tsc_early_khz=50000 ",
    "root=/dev/vda bulkhead.stage1=stop"
);

/// The first userspace line (tests/guest/debian/stage1-init).
const USERSPACE: &str = "guest: stage1: userspace up uptime=";

fn debian_conf() -> String {
    format!(
        "[vm.debian]\nkind = \"linux\"\nimage = \"vmlinuz\"\ninitrd = \"initramfs.cpio.gz\"\n\
         memory = \"{MEGS}M\"\nconsole-timestamps = true\ncmdline = \"{DEBIAN_CMDLINE}\"\n"
    )
}

/// The Debian guest's directory: `$BULKHEAD_DEBIAN_GUEST`, else `scripts/build-debian-guest`'s.
pub fn debian_guest_dir() -> Result<PathBuf, BootError> {
    super::cached_guest_dir("BULKHEAD_DEBIAN_GUEST", "scripts/build-debian-guest")
}

/// The two runs' transcripts and host wall times (the Linux rows' type: the same pair of runs).
pub type DebianRuns<'a> = super::figures::LinuxRuns<'a>;

/// The guest's `/proc/uptime` at its first userspace line, in seconds.
fn uptime(transcript: &str) -> Option<f64> {
    num(line_with(transcript, USERSPACE)?, "uptime")
}

/// The Debian figures: uptime at userspace under Bulkhead and bare, their ratio, Bulkhead's
/// ticks from VM entry, the host wall times.
pub fn debian_figures(r: &DebianRuns<'_>) -> Vec<Figure> {
    let s = SEC_DEBIAN;
    let up_method =
        "/proc/uptime printed by the initramfs's first line (`guest: stage1: userspace up`)";
    let (a, b) = (uptime(r.bulkhead), uptime(r.bare));
    vec![
        Figure::new(
            s,
            "Bulkhead: VM entry to userspace",
            ticks_of(r.bulkhead, "debian", USERSPACE).map(|t| t as f64),
            "TSC ticks",
            "hypervisor console timestamp (TSC ticks since the first VM entry) of `guest: stage1: userspace up`",
        ),
        Figure::new(s, "Bulkhead: uptime at userspace", a, "s (guest)", up_method),
        Figure::new(s, "bare Bochs: uptime at userspace", b, "s (guest)", up_method),
        Figure::new(
            s,
            "ratio Bulkhead / bare: uptime at userspace",
            a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b),
            "×",
            "the two uptimes above",
        ),
        Figure::new(
            s,
            "Bulkhead: host wall time of the run",
            r.bulkhead_wall,
            "s (host)",
            "wall time of the Bochs run, boot of the hypervisor included",
        ),
        Figure::new(
            s,
            "bare Bochs: host wall time of the run",
            r.bare_wall,
            "s (host)",
            "wall time of the Bochs run, SYSLINUX included",
        ),
    ]
}

/// Runs Debian's kernel under Bulkhead and on bare Bochs; in smoke mode, nothing.
pub fn run(o: &Options) -> Result<Vec<Figure>, BootError> {
    if o.smoke {
        return Ok(debian_figures(&DebianRuns::default())
            .into_iter()
            .map(Figure::skipped)
            .collect());
    }
    let dir = debian_guest_dir()?;
    let files = [dir.join("vmlinuz"), dir.join("initramfs.cpio.gz")];
    let bulkhead = run_guest(
        o,
        "Debian's kernel under Bulkhead",
        &debian_conf(),
        &files,
        1800,
    )?;
    let (_tmp, bare_img) =
        super::bare_linux_image(&dir, DEBIAN_CMDLINE, ("vmlinuz", "initramfs.cpio.gz"))?;
    let bare = boot(o, "Debian's kernel on bare Bochs", &bare_img, MEGS, 1800)?;
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        for (name, t) in [
            ("debian-bulkhead", &bulkhead.transcript),
            ("debian-bare", &bare.transcript),
        ] {
            let p = parent.join(format!("{name}.transcript.txt"));
            std::fs::write(&p, t).map_err(io("cannot write", &p))?;
        }
    }
    Ok(debian_figures(&DebianRuns {
        bulkhead: &bulkhead.transcript,
        bulkhead_wall: Some(bulkhead.wall.as_secs_f64()),
        bare: &bare.transcript,
        bare_wall: Some(bare.wall.as_secs_f64()),
    }))
}

/// `bench --only debian`: just these rows.
pub fn run_only(o: &Options) -> Result<super::Report, BootError> {
    super::irq::only(o, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_both_runs() {
        let bulkhead = "[   9] INFO  vm debian: first VM entry\n\
                        [debian +4000000] guest: stage1: userspace up uptime=3.20\n";
        let bare = "guest: stage1: userspace up uptime=2.50\n";
        let f = debian_figures(&DebianRuns {
            bulkhead,
            bulkhead_wall: Some(100.0),
            bare,
            bare_wall: Some(80.0),
        });
        let values: Vec<_> = f.iter().map(|f| f.value).collect();
        assert_eq!(
            values,
            [
                Some(4_000_000.0),
                Some(3.2),
                Some(2.5),
                Some(3.2 / 2.5),
                Some(100.0),
                Some(80.0)
            ]
        );
        // A run without the line gives missing figures, not zeros.
        let f = debian_figures(&DebianRuns::default());
        assert!(f.iter().all(|f| f.value.is_none()));
    }
}
