//! The hypervisor shell attached to a Linux guest's busybox shell (issue 17): two VMs, the
//! Linux test guest (`bulkhead.end=shell`) and a `forever.elf`; Ctrl-A opens the shell, `vms`
//! lists both, `console linux` types commands into the guest's 16550 (receive interrupt), the
//! guest's echo and output come back as its own console lines, Ctrl-A detaches, `stop
//! forever` stops the other VM with its report (its lines at the start of a line, the prompt
//! shown again after it), `restart forever` boots it again from its configuration and `stop`
//! ends it again, `stats linux` before and after the typed commands shows the exit total growing, and attached again `exit` ends the guest's shell so its init powers
//! the VM off: the run ends with status 0. The keystrokes are those of the session a person
//! typed under tmux (tests/fixtures/shell-session.txt), whose hypervisor lines must appear
//! here too.

use bulkhead_boot::serial_input::Feed;
use bulkhead_boot::transcript::kernel_messages;
use bulkhead_boot::{Platform, RunSpec};
use bulkhead_tests::{boot_with_input, bundle_files, image_for, linux_guest};
use std::time::Duration;

const PROMPT: &str = "bulkhead> ";
const ATTACHED: &str = "[shell] attached to vm linux (Ctrl-A detaches)\r\n";
/// What `forever.elf` prints once it runs.
const FOREVER_RUNNING: &str = "forever: running";
/// A paste longer than COM1's 16-byte receive FIFO (and short enough that busybox, at 80
/// columns, does not wrap the echoed line).
const PASTE: &str = "0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnop";

const CONF: &str = "[vm.linux]\nkind = \"linux\"\nimage = \"bzImage\"\ninitrd = \"initramfs.cpio.lz4\"\n\
    memory = \"64M\"\ncmdline = \"console=ttyS0,115200 quiet panic=-1 reboot=t io_delay=none nolapic \
    tsc=reliable no_timer_check bulkhead.checks=none bulkhead.end=shell\"\n\
    [vm.forever]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"16M\"\n";

/// The session a person typed under tmux (scripts/run's way: bulkhead-boot run on a terminal).
const SESSION: &str = include_str!("../fixtures/shell-session.txt");

#[test]
fn console_types_into_a_linux_shell() {
    let dir = linux_guest();
    let files = [
        dir.join("bzImage"),
        dir.join("initramfs.cpio.lz4"),
        bulkhead_boot::image::guest_dir().join("forever.elf"),
    ];
    let (_tmp, image) = bundle_files(CONF, &files);
    let echo_paste = format!("echo {PASTE}\r");
    let input = vec![
        Feed::new("[linux] guest: shell (exit to power off)", "\x01"),
        Feed::new(PROMPT, "vms\r"),
        Feed::new(PROMPT, "stats linux\r"),
        Feed::new(PROMPT, "console linux\r"),
        // Typed at once, as tmux's send-keys does: 22 bytes, more than the UART's FIFO.
        Feed::new(ATTACHED, "echo hello-from-shell\r"),
        Feed::new("[linux] hello-from-shell\r\n", echo_paste.as_str()),
        Feed::new(format!("[linux] {PASTE}\r\n"), "\x01"),
        // Again after the guest ran the typed commands (an idle tickless Linux may take no
        // exit between two back-to-back `stats`).
        Feed::new(PROMPT, "stats linux\r"),
        Feed::new(PROMPT, "stop forever\r"),
        // Stopped, then booted again from its configuration; stopped again for the run's end.
        Feed::new("vm forever: device work: ", "restart forever\r"),
        Feed::new(
            "[shell] vm forever: started again from its configuration",
            "",
        ),
        Feed::new(FOREVER_RUNNING, "stop forever\r"),
        Feed::new("vm forever: device work: ", "console linux\r"),
        Feed::new(ATTACHED, "exit\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 300);
    let t = &run.outcome.transcript;
    let lines: Vec<&str> = t.lines().map(|l| l.trim_end_matches('\r')).collect();
    let has_line = |want: &str| lines.contains(&want);
    run.exited(0, "ok");
    // `vms`: both VMs running, one vCPU each on CPU 0.
    assert!(
        has_line("VM           STATE    VCPUS  CPUS       MEMORY     UPTIME"),
        "{t}"
    );
    for (name, memory) in [("linux", "64M"), ("forever", "16M")] {
        let row = format!("{name:<12} running    1/1  0       {memory:>9} ");
        assert!(lines.iter().any(|l| l.starts_with(&row)), "{row:?}: {t}");
    }
    // `stats linux` twice: the exit total grew between the two calls while the guest ran.
    let totals: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("linux: exits: total "))
        .filter_map(|r| r.trim_start().strip_prefix("count="))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(totals.len(), 2, "{t}");
    assert!(totals[1] > totals[0], "{totals:?}: {t}");
    // The guest's echo of the typed command and the command's output are its own console
    // lines, whole (nothing lost, the prompt's cursor query filtered out), never hypervisor
    // lines.
    for want in [
        "[linux] / # echo hello-from-shell",
        "[linux] hello-from-shell",
        &format!("[linux] / # echo {PASTE}"),
        &format!("[linux] {PASTE}"),
        "[linux] / # exit",
    ] {
        assert!(has_line(want), "no line {want:?}: {t}");
        run.saw(want);
    }
    assert!(
        !kernel_messages(t).any(|m| m.contains("hello-from-shell")),
        "{t}"
    );
    assert!(!t.contains('\u{1b}'), "{t}");
    // Attached twice; detached with Ctrl-A, on a line of its own after the guest's.
    assert_eq!(
        lines.iter().filter(|l| **l == ATTACHED.trim_end()).count(),
        2
    );
    assert!(has_line("[shell] detached from vm linux"), "{t}");
    let detached = lines
        .iter()
        .position(|l| *l == "[shell] detached from vm linux")
        .unwrap();
    assert!(lines[detached - 1].starts_with("[linux] "), "{t}");
    // `stop forever`: its report, each line a hypervisor line of its own (not after the
    // prompt), then the prompt again for the next command.
    assert!(has_line("[shell] stopping vm forever"), "{t}");
    run.line("vm forever: stopped: stopped by the operator (shell `stop`)");
    run.line("vm forever: exits: total ");
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(PROMPT) && l.contains("INFO ")),
        "a hypervisor line continued the prompt: {t}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "bulkhead> console linux")
            .count(),
        2,
        "{t}"
    );
    // `restart forever` after its stop: built again from its configuration, it ran again
    // (its line twice), and `stop` ended that second run with a report of its own.
    assert!(has_line("[shell] restarting vm forever"), "{t}");
    run.line("vm forever: restarting from its configuration (1 vCPU(s); rebuilt in ");
    assert!(
        has_line("[shell] vm forever: started again from its configuration (1 vCPU(s))"),
        "{t}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("[forever] ") && l.ends_with(FOREVER_RUNNING))
            .count(),
        2,
        "{t}"
    );
    assert_eq!(
        kernel_messages(t)
            .filter(|m| m.contains("vm forever: stopped: stopped by the operator (shell `stop`)"))
            .count(),
        2,
        "{t}"
    );
    // The guest's shell ended: its init powered the VM off.
    run.line("vm linux: stopped: guest powered off (ACPI S5)");
    let forever_stop = t.find("vm forever: stopped:").unwrap();
    let linux_stop = t.find("vm linux: stopped:").unwrap();
    assert!(forever_stop < linux_stop);
    // The person's session shows the same hypervisor lines (the deterministic ones).
    for want in [
        "[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it",
        "bulkhead> vms",
        "VM           STATE    VCPUS  CPUS       MEMORY     UPTIME",
        "bulkhead> console linux",
        "[shell] attached to vm linux (Ctrl-A detaches)",
        "[linux] / # echo hello-from-shell",
        "[linux] hello-from-shell",
        "[shell] detached from vm linux",
        "bulkhead> stop forever",
        "[shell] stopping vm forever",
        "[linux] / # exit",
    ] {
        assert!(
            SESSION.lines().any(|l| l.trim_end() == want),
            "the fixture lacks {want:?}"
        );
        assert!(has_line(want), "no line {want:?}: {t}");
    }
}

/// QEMU's COM1 on the runner's pseudo-terminal (`-chardev serial`, what `bulkhead-boot run`
/// uses on a terminal with `--platform kvm`): the whole transcript arrives through it and a
/// feed is typed. Under TCG (no VMX) the kernel ends in its diagnosis before any shell.
#[test]
fn qemu_com1_through_a_pty_carries_the_whole_transcript() {
    let mut spec = RunSpec::new(Platform::Qemu, image_for(Platform::Qemu));
    spec.timeout = Duration::from_secs(120);
    spec.input = vec![Feed::new("platform: QEMU", "\x01")];
    let outcome = bulkhead_boot::run(&spec).expect("run QEMU");
    let t = &outcome.transcript;
    assert!(outcome.saw("Bulkhead 0."), "{t}");
    assert!(outcome.saw("platform: QEMU"), "{t}");
    assert!(outcome.saw("cannot run: "), "{t}");
    let exit = outcome.exit.clone().expect("exit line");
    assert!(
        exit.name == "not-intel" || exit.name == "no-vmx",
        "{exit:?}: {t}"
    );
    assert_eq!(
        outcome.emulator_status.and_then(|s| s.code()),
        Some((i32::from(exit.code) << 1) | 1),
        "QEMU's exit status carries the kernel's"
    );
}
