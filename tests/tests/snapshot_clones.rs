//! Instant clones (issue 18): two VMs configured `from-snapshot = "s1"` wait, stopped, until
//! snapshot s1 of the test guest snapshot.elf is taken; `clone s1 2` starts both from it
//! without copying its RAM (they share the snapshot's pages through EPT and copy a page on its
//! first write). Clone c1 writes every page from 2 MiB to the end of its RAM and checks it;
//! then clone c2 and the snapshot's own VM, each given its key, find their 2 MiB pattern
//! unchanged: a clone that writes everywhere changes neither the snapshot nor another clone.
//! The clones' memory lines show what they hold: c1 a frame for every page it wrote, c2 only
//! the few pages it touched.

use bulkhead_boot::serial_input::Feed;
use bulkhead_tests::{boot_with_input, bundle_image, key_value};

const PROMPT: &str = "bulkhead> ";

#[test]
fn clones_share_the_snapshot_and_copy_what_they_write() {
    let clone = |name: &str| {
        format!("[vm.{name}]\nkind = \"elf64\"\nfrom-snapshot = \"s1\"\nmemory = \"16M\"\n")
    };
    let conf = format!(
        "[vm.snap]\nkind = \"elf64\"\nimage = \"snapshot.elf\"\nmemory = \"16M\"\n{}{}",
        clone("c1"),
        clone("c2")
    );
    let (_dir, image) = bundle_image(&conf, &["snapshot.elf"]);
    let attached = |vm: &str| format!("[shell] attached to vm {vm} (Ctrl-A detaches)\r\n");
    // Ctrl-U first on every command line: see tests/tests/snapshot.rs.
    let input = vec![
        Feed::new("guest snapshot: ready sum=", "\x01"),
        Feed::new(PROMPT, "\x15start c1\r"),
        Feed::new(PROMPT, "\x15snapshot snap s1\r"),
        Feed::new("[shell] snapshot s1 of vm snap: ", "\x15clone s1 3\r"),
        Feed::new(PROMPT, "\x15restore s1 c1\r"),
        Feed::new(PROMPT, "\x15clone s1 2\r"),
        Feed::new("vm c2: restarting from a snapshot (", "\x15console c1\r"),
        Feed::new(attached("c1"), "w"),
        Feed::new("guest snapshot: scribbled ", "\x01"),
        Feed::new(PROMPT, "\x15console c2\r"),
        Feed::new(attached("c2"), "g"),
        Feed::new("vm c2: stopped:", "\x01"),
        Feed::new(PROMPT, "\x15stats c1\r"),
        Feed::new("memory: released-pages=", "\x15snapshots\r"),
        Feed::new(PROMPT, "\x15stop c1\r"),
        Feed::new("vm c1: stopped:", "\x15console snap\r"),
        Feed::new(attached("snap"), "g"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 600);
    let t = &run.outcome.transcript;
    run.exited(0, "ok");
    let lines: Vec<&str> = t.lines().map(|l| l.trim_start_matches('\r')).collect();
    let guest = |vm: &str, needle: &str| {
        let prefix = format!("[{vm}] ");
        lines
            .iter()
            .filter(|l| l.starts_with(&prefix) && l.contains(needle))
            .copied()
            .collect::<Vec<_>>()
    };
    // Only the snapshot's VM booted; the clones started where it was.
    let ready = guest("snap", "guest snapshot: ready sum=");
    assert_eq!(ready.len(), 1, "{t}");
    let sum = ready[0].split("sum=").nth(1).unwrap().trim();
    for c in ["c1", "c2"] {
        assert!(
            guest(c, "guest snapshot: ready").is_empty(),
            "{c} booted: {t}"
        );
        assert_eq!(
            t.matches(&format!("vm {c}: restarting from a snapshot (1 vCPU(s)"))
                .count(),
            1,
            "{t}"
        );
    }
    // c1 wrote all of [2 MiB, 16 MiB) and read it back.
    assert_eq!(
        guest("c1", "guest snapshot: scribbled "),
        ["[c1] guest snapshot: scribbled pages=3584 ok=1"],
        "{t}"
    );
    // c2 and the snapshot's VM still see the snapshot's memory.
    for vm in ["c2", "snap"] {
        let resumed = guest(vm, "guest snapshot: resumed ");
        assert_eq!(resumed.len(), 1, "{vm}: {t}");
        assert!(
            resumed[0].ends_with(&format!(
                "guest snapshot: resumed sum={sum} same=1 ticks=20 tsc-forward=1 key=g"
            )),
            "{vm}: {}",
            resumed[0]
        );
        assert_eq!(guest(vm, "DONE passed=1 failed=0").len(), 1, "{vm}: {t}");
    }
    // The refusals.
    for error in [
        "error: the clone cannot start: no snapshot named `s1` (`snapshots` lists them)",
        "error: 3 clone(s) of `s1` asked, but of the 2 VM(s) configured with from-snapshot = \
         \"s1\" only 2 are stopped; nothing was started",
        "error: the VM is a clone of snapshot `s1`: `start` it to start it from that snapshot",
    ] {
        assert!(lines.contains(&error), "{error}: {t}");
    }
    assert!(
        lines.contains(&"[shell] starting 2 clone(s) of snapshot s1: c1 c2"),
        "{t}"
    );
    // What each clone holds. c1: a frame for each of the 3,584 pages it wrote (at least 512 of
    // them copies of the snapshot's pattern, the rest zero pages), plus the few of its image,
    // stack and page tables; at most its 4,096 pages.
    let c1 = run.line("vm c1: memory: ");
    eprintln!("{c1}");
    let own = key_value(c1, "own-frames");
    assert!((3584..=4096).contains(&own), "{c1}");
    assert!(key_value(c1, "copies") >= 512, "{c1}");
    assert!(
        key_value(c1, "copies") + key_value(c1, "zero-fills") >= 3584,
        "{c1}"
    );
    assert_eq!(key_value(c1, "starved-writes"), 0, "{c1}");
    // The live view (`stats c1`) showed the same frames while it ran.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("memory: released-pages=0 faulted-in=0 clone: own-frames=")),
        "{t}"
    );
    // c2 touched only what its wait and its check needed: the 2 MiB it read are mapped from
    // the snapshot, not copied.
    let c2 = run.line("vm c2: memory: ");
    eprintln!("{c2}");
    assert!(key_value(c2, "own-frames") < 64, "{c2}");
    assert!(key_value(c2, "shared-maps") >= 512, "{c2}");
    assert!(key_value(c2, "copies") < 64, "{c2}");
    // The snapshot's pages are held once, shared by the two clones.
    assert!(
        lines.iter().any(|l| l.starts_with("s1 ")
            && l.contains(" KiB shared by its clones (2 holding it)")),
        "{t}"
    );
    assert_eq!(t.matches("vm snap: stopped:").count(), 1, "{t}");
}
