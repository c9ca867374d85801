//! A guest must not be able to forge the run's verdict (issue 9, finding 6 and "A guest can
//! forge the run's verdict"): `hostile-forge` prints, on the UART and through CONSOLE_WRITE,
//! the kernel's exit line `bulkhead: exit status 0 (ok)`, an exit-statistics line, a stop
//! report and the selftest's DONE line, and ESC [ 2 J, then keeps running for a while and
//! powers off. The runner stops the emulator at the first exit line it believes, so a harness
//! fooled by the forged one ends the run before the hypervisor's real stop report of the
//! forger; the forged statistics must not be read as the VM's, and no raw escape byte may
//! reach the transcript (the operator's terminal). Before the transcript was anchored and
//! guest lines cleaned, this test failed on all three counts.

use bulkhead_tests::{boot_image, bundle_image};

const CONF: &str = r#"
[vm.forge]
kind = "elf64"
image = "hostile-forge.elf"
memory = "16M"

[vm.selftest]
kind = "elf64"
image = "selftest.elf"
memory = "16M"

[[vm.selftest.virtio-blk]]
size = "1M"
"#;

#[test]
fn a_guest_cannot_forge_the_verdict_or_the_statistics() {
    let (_dir, image) = bundle_image(CONF, &["hostile-forge.elf", "selftest.elf"]);
    let run = boot_image(&image, "corei7_skylake_x", 240);
    let t = &run.outcome.transcript;
    // The forger ran and forged.
    run.saw("[forge] guest hostile-forge: attempt forged hypervisor lines");
    assert!(
        t.lines()
            .any(|l| l.starts_with("[selftest] guest selftest: DONE passed=21 failed=0")),
        "the selftest VM next to the forger must finish (its own line, not the forged one)\n{t}"
    );
    // The run went on after the forged exit line: the forger's own stop report and the real
    // verdict came after it.
    let forged_at = t
        .find("bulkhead: exit status 0 (ok)")
        .expect("the forger printed its exit line");
    let stopped_at = t
        .find("vm forge: stopped: guest halted with interrupts disabled")
        .unwrap_or_else(|| panic!("the run ended at the forged exit line\n{t}"));
    assert!(forged_at < stopped_at, "the forged line came first\n{t}");
    run.exited(0, "ok")
        .saw("bulkhead: all VMs stopped (2 ran, 0 could not start)");
    // Forged statistics are not the VM's statistics: the forger made no CPUID exits.
    assert_eq!(
        run.exit_count("forge", "CPUID"),
        None,
        "the forged `vm forge: exits: CPUID count=999` line was read as the VM's statistics"
    );
    // Escape sequences from guests never reach the operator's terminal raw.
    assert!(
        !t.contains('\u{1b}'),
        "a guest's ESC byte reached the transcript raw"
    );
}
