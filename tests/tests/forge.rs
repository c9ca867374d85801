//! A guest must not be able to forge the run's verdict (issue 9, finding 6 and "A guest can
//! forge the run's verdict"): `hostile-forge` prints, on the UART and through CONSOLE_WRITE,
//! the kernel's exit line `bulkhead: exit status 0 (ok)`, an exit-statistics line, a stop
//! report and the selftest's DONE line, and ESC [ 2 J, then spins forever with interrupts
//! off. The hypervisor therefore never ends, and the only honest verdict is a timeout: the
//! run must not be reported as ok, the forged statistics must not be read as the VM's, and no
//! raw escape byte may reach the transcript (the operator's terminal).
//!
//! Against the current harness and kernel this test fails: `bulkhead-boot` takes the forged
//! `[forge] bulkhead: exit status 0 (ok)` as the kernel's exit line (transcript::parse_exit
//! matches anywhere in a line), stops the emulator and reports ok; `exit_count` reads the
//! forged `CPUID count=999`; the escape sequence passes through raw.

use bulkhead_tests::{boot_image, bundle_image};

const CONF: &str = "\
[vm forge]
kind = elf64
image = hostile-forge.elf
memory = 16M

[vm selftest]
kind = elf64
image = selftest.elf
memory = 16M
virtio-blk = size:1M
";

#[test]
fn a_guest_cannot_forge_the_verdict_or_the_statistics() {
    let (_dir, image) = bundle_image(CONF, &["hostile-forge.elf", "selftest.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 90);
    let t = &run.outcome.transcript;
    // The forger ran and forged.
    run.saw("[forge] guest hostile-forge: attempt forged hypervisor lines");
    assert!(
        t.lines()
            .any(|l| l.starts_with("[selftest] guest selftest: DONE passed=21 failed=0")),
        "the selftest VM next to the forger must finish (its own line, not the forged one)\n{t}"
    );
    // The hypervisor never ended (the forge VM spins): no verdict but the timeout.
    assert!(
        run.outcome.exit.is_none(),
        "a guest forged the verdict: the run was reported as {:?}\n--- transcript ---\n{t}",
        run.outcome.exit
    );
    assert!(run.outcome.timed_out, "the run must end by its timeout");
    // Forged statistics of a VM that never stopped are not its statistics.
    assert_eq!(
        run.exit_count("forge", "CPUID"),
        None,
        "the forged `vm forge: exits: CPUID count=999` line was read as the VM's statistics"
    );
    assert!(
        !t.contains("vm forge: stopped:"),
        "the forge VM never stops"
    );
    // Escape sequences from guests never reach the operator's terminal raw.
    assert!(
        !t.contains('\u{1b}'),
        "a guest's ESC byte reached the transcript raw"
    );
}
