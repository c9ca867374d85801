//! VM snapshots (issue 18) through the shell: a guest that filled 2 MiB of its RAM and counts
//! PIT interrupts waits for a key; `snapshot snap s1` pauses it and keeps its state; typed a
//! key it checks its memory, waits for 20 more timer interrupts and stops. `restore s1 snap`
//! rebuilds the stopped VM from the snapshot: the guest does not boot again (its first line
//! appears once) but continues in its wait, and given another key prints the same result
//! line. Beside it a VM of another size keeps running throughout; the refusals (a name
//! taken, a running VM, another shape, an unknown snapshot) are one line each.

use bulkhead_boot::serial_input::Feed;
use bulkhead_tests::{boot_with_input, bundle_image};

const PROMPT: &str = "bulkhead> ";

#[test]
fn a_snapshot_restored_continues_where_it_was_taken() {
    let conf = "[vm.snap]\nkind = \"elf64\"\nimage = \"snapshot.elf\"\nmemory = \"16M\"\n\
                [vm.keep]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"32M\"\n";
    let (_dir, image) = bundle_image(conf, &["snapshot.elf", "forever.elf"]);
    let taken = "[shell] snapshot s1 of vm snap: ";
    // Every command line starts with Ctrl-U (erase the line): Bochs's COM1 now and then
    // delivers a byte of a 16-byte burst a second time, after the line it belonged to
    // (docs/architecture.md, the console input); the erase keeps it off the next line.
    let input = vec![
        Feed::new("guest snapshot: ready sum=", "\x01"),
        Feed::new(PROMPT, "\x15snapshot snap s1\r"),
        Feed::new(taken, "\x15snapshot snap s1\r"),
        Feed::new(PROMPT, "\x15snapshots\r"),
        Feed::new(PROMPT, "\x15restore s1 snap\r"),
        Feed::new(PROMPT, "\x15restore s1 keep\r"),
        Feed::new(PROMPT, "\x15restore nope snap\r"),
        Feed::new(PROMPT, "\x15console snap\r"),
        Feed::new("[shell] attached to vm snap (Ctrl-A detaches)\r\n", "g"),
        Feed::new("vm snap: stopped:", "\x01"),
        Feed::new(PROMPT, "\x15restore s1 snap\r"),
        Feed::new("vm snap: restarting from a snapshot", "\x15console snap\r"),
        Feed::new("[shell] attached to vm snap (Ctrl-A detaches)\r\n", "h"),
        Feed::new("key=h", ""),
        Feed::new("vm snap: stopped:", "\x01"),
        Feed::new(PROMPT, "\x15forget s1\r"),
        Feed::new(PROMPT, "\x15snapshots\r"),
        Feed::new(PROMPT, "\x15stop keep\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 400);
    let t = &run.outcome.transcript;
    run.exited(0, "ok");
    let lines: Vec<&str> = t.lines().map(|l| l.trim_start_matches('\r')).collect();
    // The guest's own lines carry its VM's prefix; the hypervisor's do not.
    let guest = |needle: &str| {
        lines
            .iter()
            .filter(|l| l.starts_with("[snap] ") && l.contains(needle))
            .copied()
            .collect::<Vec<_>>()
    };
    let ready = guest("guest snapshot: ready sum=");
    assert_eq!(ready.len(), 1, "the restored guest booted again: {t}");
    let sum = ready[0].split("sum=").nth(1).unwrap().trim();
    let resumed = guest("guest snapshot: resumed ");
    assert_eq!(resumed.len(), 2, "{t}");
    for (line, key) in resumed.iter().zip(['g', 'h']) {
        assert!(
            line.ends_with(&format!(
                "guest snapshot: resumed sum={sum} same=1 ticks=20 tsc-forward=1 key={key}"
            )),
            "{line}"
        );
    }
    assert_eq!(guest("DONE passed=1 failed=0").len(), 2, "{t}");
    // The snapshot: one vCPU, 16 MiB, at least the 512 pages the guest filled not zero.
    let report = lines
        .iter()
        .find(|l| l.starts_with(taken))
        .unwrap_or_else(|| panic!("no snapshot line: {t}"));
    eprintln!("{report}");
    assert!(report.contains(": 1 vCPU(s), 16 MiB RAM ("), "{report}");
    let pages: u64 = report
        .split(" RAM (")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((512..1024).contains(&pages), "{report}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("s1 ") && l.contains(" vm snap ") && l.contains(" 16 MiB RAM ")),
        "{t}"
    );
    // The refusals.
    for error in [
        "error: a snapshot named `s1` exists (`forget s1` drops it)",
        "error: the VM is not stopped (`stop VM` first)",
        "error: the snapshot does not fit this VM: RAM: the snapshot's is 16 MiB, this VM's 32 MiB",
        "error: no snapshot named `nope` (`snapshots` lists them)",
    ] {
        assert!(lines.contains(&error), "{error}: {t}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[shell] snapshot s1 dropped (")),
        "{t}"
    );
    assert!(lines.contains(&"[shell] no snapshots"), "{t}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "[shell] vm snap: started again from a snapshot (1 vCPU(s))")
            .count(),
        1,
        "{t}"
    );
    assert_eq!(
        t.matches("vm snap: restarting from a snapshot (").count(),
        1,
        "{t}"
    );
    // Both incarnations of snap stopped by the guest's own halt, keep by the operator once.
    assert_eq!(t.matches("vm snap: stopped:").count(), 2, "{t}");
    assert_eq!(t.matches("vm keep: stopped:").count(), 1, "{t}");
    assert_eq!(t.matches("vm keep: first VM entry").count(), 1, "{t}");
}
