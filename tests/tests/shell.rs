//! The hypervisor shell on COM1 (issue 17), typed into through the runner's pseudo-terminal
//! (bulkhead_boot::serial_input): Ctrl-A opens the shell, `vms` lists the VMs, `stats VM`
//! counts grow between two calls, an unknown VM gets a one-line error with the usage, `stop VM`
//! stops one VM with its report while the other keeps running, then `stop` the other.

use bulkhead_boot::serial_input::Feed;
use bulkhead_tests::{boot_with_input, bundle_image, Checked};

const PROMPT: &str = "bulkhead> ";
/// Bytes pasted into a guest that does not read them.
const PASTE: usize = 1000;

fn forever(name: &str) -> String {
    format!("[vm.{name}]\nkind = \"elf64\"\nimage = \"forever.elf\"\nmemory = \"16M\"\n")
}

/// The `count=` of the `NAME: exits: REASON` lines the shell's `stats` printed, in order.
fn stats_counts(run: &Checked, vm: &str, reason: &str) -> Vec<u64> {
    let prefix = format!("{vm}: exits: {reason} ");
    run.outcome
        .transcript
        .lines()
        .filter_map(|l| l.trim_start_matches('\r').strip_prefix(&prefix))
        .filter_map(|rest| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix("count="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

#[test]
fn shell_lists_counts_and_stops_vms() {
    let conf = format!("{}{}", forever("alpha"), forever("beta"));
    let (_dir, image) = bundle_image(&conf, &["forever.elf"]);
    let mut paste = vec![b'p'; PASTE];
    paste.push(0x01);
    let input = vec![
        // Both guests run: beta's first console line.
        Feed::new("[beta] ", "\x01"),
        Feed::new(PROMPT, "vms\r"),
        Feed::new(PROMPT, "stats alpha\r"),
        Feed::new(PROMPT, "stats alpha\r"),
        Feed::new(PROMPT, "regs alpha\r"),
        Feed::new(PROMPT, "regs alpha 1\r"),
        Feed::new(PROMPT, "top\r"),
        // One refresh, then any key ends it.
        Feed::new("top: exits per second (any key stops)\r\n", "q"),
        Feed::new(PROMPT, "stats gamma\r"),
        Feed::new(PROMPT, "stop beta\r"),
        // A paste of PASTE bytes into alpha, which never reads its UART: its receive buffer
        // takes 256, the shell's input queue 256, the rest is dropped; Ctrl-A still detaches.
        Feed::new("vm beta: console: ", "console alpha\r"),
        Feed::new("[shell] attached to vm alpha (Ctrl-A detaches)\r\n", paste),
        // Ctrl-U first: the line editor starts empty whatever the paste left (see below).
        Feed::new("[shell] detached from vm alpha", "\x15vms\r"),
        Feed::new(PROMPT, "stop alpha\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 300);
    let t = &run.outcome.transcript;
    run.saw("vm alpha: first VM entry")
        .saw("vm beta: first VM entry")
        .exited(0, "ok");
    assert!(
        t.contains("[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it"),
        "{t}"
    );
    // The typed command is echoed after the prompt.
    assert!(t.contains("bulkhead> vms\r\n"), "{t}");
    // `vms`: the header and both VMs running, one vCPU each on CPU 0, 16 MiB.
    assert!(
        t.contains("VM           STATE    VCPUS  CPUS       MEMORY     UPTIME"),
        "{t}"
    );
    let row = |name: &str, state: &str, running: u32| {
        t.lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "{name:<12} {state:<8}   {running}/1  0             16M "
                ))
            })
            .count()
    };
    assert_eq!(row("alpha", "running", 1), 2, "{t}");
    assert_eq!(row("beta", "running", 1), 1, "{t}");
    assert_eq!(row("beta", "stopped", 0), 1, "{t}");
    // `stats alpha` twice: its CPUID count grew in between.
    let cpuids = stats_counts(&run, "alpha", "CPUID");
    assert_eq!(cpuids.len(), 2, "{t}");
    assert!(cpuids[1] > cpuids[0], "{cpuids:?}");
    assert!(cpuids[0] > 0, "{cpuids:?}");
    assert!(t.contains("alpha: running for "), "{t}");
    // An unknown VM: one line, with the usage.
    assert!(
        t.contains("\nerror: no VM named `gamma` (`vms` lists them); usage: stats VM\r\n"),
        "{t}"
    );
    // `regs alpha`: vCPU 0's registers from its last exit, a 64-bit guest (CR0.PG|PE,
    // EFER.LMA, a code selector).
    let regs_title = t
        .lines()
        .find(|l| l.starts_with("alpha vcpu 0: "))
        .expect("regs title");
    assert!(
        regs_title.contains(" (cpu 0); registers as of its last exit, "),
        "{regs_title}"
    );
    let field = |line_start: &str, name: &str| -> u64 {
        let line = t
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no `{line_start}` line: {t}"));
        let key = format!("{name}=");
        let at = line
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            + key.len();
        let v = line[at..].split_whitespace().next().unwrap_or("");
        u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
    };
    assert_eq!(field("  cr0 =", "cr0 ") & 0x8000_0001, 0x8000_0001, "{t}");
    assert_ne!(field("  cr0 =", "efer") & (1 << 10), 0, "{t}");
    assert_ne!(field("  cs=", "cs"), 0, "{t}");
    assert!(field("  rip =", "rip ") != 0, "{t}");
    assert!(
        t.contains("\nerror: `1` is not a vCPU of this VM (0..1); usage: regs VM [VCPU]\r\n"),
        "{t}"
    );
    // `top`: a refresh with both VMs' rates, alpha's CPUID among them, then the key ended it.
    let refresh = &t[t
        .find("top: exits per second (any key stops)")
        .expect("top")..];
    let alpha_rate = refresh
        .lines()
        .find(|l| l.starts_with("alpha        total "))
        .expect("alpha's top line");
    let total: u64 = alpha_rate
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.strip_suffix("/s"))
        .and_then(|v| v.parse().ok())
        .expect("alpha's rate");
    assert!(total > 0, "{alpha_rate}");
    assert!(alpha_rate.contains(" CPUID "), "{alpha_rate}");
    assert!(
        refresh
            .lines()
            .any(|l| l.starts_with("beta         total ")),
        "{t}"
    );
    assert!(t.contains("[shell] top ended"), "{t}");
    // `stop beta`: its report, with the operator as the reason, while alpha still runs.
    assert!(t.contains("[shell] stopping vm beta"), "{t}");
    run.saw("vm beta: stopped: stopped by the operator (shell `stop`)")
        .saw("vm alpha: stopped: stopped by the operator (shell `stop`)");
    let beta_stop = t.find("vm beta: stopped:").unwrap();
    let alpha_stop = t.find("vm alpha: stopped:").unwrap();
    assert!(beta_stop < alpha_stop);
    // The paste: up to 256 bytes fill alpha's UART; the shell's 256-byte input queue holds what
    // waits behind them, dropped for the escape key at the end, and what arrived while it
    // was full is dropped at the queue. Bytes the machine's UART lost to a full receive FIFO
    // are not seen at all, and its overruns say so: every pasted byte is accounted for, or
    // an overrun is counted. The 10 command lines typed before this `vms` are counted.
    let input_line = t
        .lines()
        .rfind(|l| l.starts_with("console input: "))
        .expect("the console input line of the last `vms`");
    let counter = |name: &str| -> usize {
        input_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {input_line}"))
    };
    assert!(
        input_line.starts_with("console input: lines=10 to-guest="),
        "{input_line} ({t})"
    );
    assert_eq!(
        (counter("ignored"), counter("dropped-long-line")),
        (0, 0),
        "{input_line}"
    );
    let to_guest = counter("to-guest");
    assert!((1..=256).contains(&to_guest), "{input_line}");
    let seen = to_guest + counter("dropped-queue-full") + counter("dropped-before-escape");
    let before_escape = counter("dropped-before-escape");
    assert!(before_escape <= 256 && before_escape > 0, "{input_line}");
    assert!(seen <= PASTE, "{input_line}");
    assert!(
        seen == PASTE || counter("uart-overruns") > 0,
        "{} pasted bytes unaccounted for and no overrun counted: {input_line}",
        PASTE - seen
    );
    eprintln!("paste of {PASTE} bytes: {input_line}");
    // The report's CPUID count is at least what the live `stats` saw before.
    let reported = run
        .exit_count("alpha", "CPUID")
        .expect("alpha's CPUID line");
    assert!(reported >= cpuids[1], "{reported} < {cpuids:?}");
}

/// `restart VM` stops a running VM (its report names the restart) and builds it again from
/// its configuration: RAM zeroed and the image loaded again, new devices on the same network
/// port (the network has exactly one port per configured device, so a second port would not
/// fit), the guest's first line again. `start VM` refuses a running VM and starts a stopped
/// one; an unknown VM gets the usage. Three incarnations of beta (one vCPU, from the pool),
/// three reports; two of alpha (two vCPUs pinned to CPU 0).
#[test]
fn shell_restarts_and_starts_a_vm_from_its_configuration() {
    let conf = format!(
        "[network.lan]\n\
         {}vcpus = 2\ncpus = [0]\n[[vm.alpha.virtio-net]]\nmac = \"52:54:00:00:00:0a\"\nnetwork = \"lan\"\n\
         {}[[vm.beta.virtio-net]]\nmac = \"52:54:00:00:00:0b\"\nnetwork = \"lan\"\n\
         [[vm.beta.virtio-blk]]\nsize = 65536\n",
        forever("alpha"),
        forever("beta"),
    );
    let (_dir, image) = bundle_image(&conf, &["forever.elf"]);
    let started = "[shell] vm beta: started again from its configuration (1 vCPU(s))";
    let input = vec![
        Feed::new("[beta] ", "\x01"),
        Feed::new(PROMPT, "restart beta\r"),
        Feed::new(started, ""),
        Feed::new("vm beta: first VM entry", "start beta\r"),
        Feed::new(PROMPT, "stop beta\r"),
        Feed::new("vm beta: console: ", "start beta\r"),
        Feed::new(started, ""),
        Feed::new("vm beta: first VM entry", "vms\r"),
        Feed::new(PROMPT, "restart gamma\r"),
        Feed::new(PROMPT, "stop beta\r"),
        Feed::new("vm beta: console: ", "restart alpha\r"),
        Feed::new(
            "[shell] vm alpha: started again from its configuration (2 vCPU(s))",
            "",
        ),
        Feed::new("vm alpha: first VM entry", "stop alpha\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 300);
    let t = &run.outcome.transcript;
    run.exited(0, "ok");
    let count = |needle: &str| t.matches(needle).count();
    assert!(t.contains("[shell] restarting vm beta\r\n"), "{t}");
    assert_eq!(
        count("vm beta: stopped: stopped by the operator to start again (shell `restart`)"),
        1,
        "{t}"
    );
    assert_eq!(
        count("vm beta: stopped: stopped by the operator (shell `stop`)"),
        2,
        "{t}"
    );
    assert_eq!(count(started), 2, "{t}");
    assert_eq!(count("vm beta: first VM entry"), 3, "{t}");
    assert_eq!(count("vm alpha: first VM entry"), 2, "{t}");
    assert_eq!(count("vm beta: stopped:"), 3, "{t}");
    assert_eq!(count("vm alpha: stopped:"), 2, "{t}");
    // alpha: two vCPUs pinned to CPU 0, both started again (each prints its first line).
    assert_eq!(
        t.lines()
            .filter(|l| l.contains("[alpha] ") && l.ends_with("forever: running"))
            .count(),
        4,
        "{t}"
    );
    // The guest ran from its entry each time: its first line three times.
    assert_eq!(
        t.lines()
            .filter(|l| l.contains("[beta] ") && l.ends_with("forever: running"))
            .count(),
        3,
        "{t}"
    );
    assert!(
        t.contains("\nerror: the VM is running (`restart VM` stops it and starts it again)\r\n"),
        "{t}"
    );
    assert!(
        t.contains("\nerror: no VM named `gamma` (`vms` lists them); usage: restart VM\r\n"),
        "{t}"
    );
    // Each incarnation's NIC on lan's port 2 (the gateway's is 0, alpha's 1), never a new
    // port.
    let beta_ports: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("vm beta: virtio-net at "))
        .filter_map(|l| l.split(" network=lan ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(beta_ports, ["port=2"; 3], "{t}");
    // After the second start `vms` shows beta running again.
    assert!(
        t.lines()
            .any(|l| l.starts_with("beta         running    1/1  0             16M ")),
        "{t}"
    );
}

/// A guest that resets its VM the moment it runs (the Multiboot test kernel with
/// `cmdline = "reset"`), beside the selftest: each reset restarts the VM (`on-reboot =
/// "restart"`, the default), but the rebuilds, which the console CPU does, are paced to a
/// tenth of its time (vm::reboot), the selftest passes meanwhile, and the shell's `stop` ends
/// the loop whether the VM is running or waiting to start again.
#[test]
fn a_reboot_loop_is_paced_and_stopped_from_the_shell() {
    use bulkhead_boot::transcript::kernel_message_at;
    let conf = format!(
        "[vm.reboot-loop]\nkind = \"multiboot\"\nimage = \"multiboot.elf\"\nmemory = \"16M\"\n\
         cmdline = \"reset\"\n{}",
        bulkhead_tests::SELFTEST_CONF
    );
    let (_dir, image) = bundle_image(&conf, &["multiboot.elf", "selftest.elf"]);
    let input = vec![
        Feed::new("vm selftest: stopped: ", "\x01"),
        Feed::new(PROMPT, "vms\r"),
        Feed::new(PROMPT, "stop reboot-loop\r"),
    ];
    let run = boot_with_input(&image, "corei7_skylake_x", input, 300);
    run.exited(0, "ok")
        .saw("[selftest] guest selftest: DONE passed=21 failed=0")
        .saw("vm selftest: stopped: guest halted with interrupts disabled (powered off)")
        .saw("bulkhead: all VMs stopped (2 ran, 0 could not start)")
        .not_saw("FAIL")
        .not_saw("hypervisor bug");
    let t = &run.outcome.transcript;
    // (TSC of the line, rebuild ticks) of each restart after a reboot.
    let mut rebuilds: Vec<(u64, u64)> = Vec::new();
    let mut reboots = 0u64;
    for line in t.lines() {
        let Some((tsc, m)) = kernel_message_at(line) else {
            continue;
        };
        if let Some(rest) =
            m.strip_prefix("vm reboot-loop: rebooting (on-reboot = \"restart\"; reboot ")
        {
            reboots += 1;
            assert_eq!(rest, format!("{reboots} of this run)"), "{t}");
        }
        if let Some(rest) = m.strip_prefix(
            "vm reboot-loop: restarting from its configuration (1 vCPU(s); rebuilt in ",
        ) {
            let ticks: u64 = rest
                .strip_suffix(" ticks)")
                .and_then(|v| v.parse().ok())
                .expect(m);
            rebuilds.push((tsc, ticks));
        }
    }
    eprintln!("reboot loop: {reboots} reboots, rebuilds (tsc, ticks): {rebuilds:?}");
    assert!(reboots >= 3, "only {reboots} reboots: {t}");
    assert!(rebuilds.len() as u64 + 1 >= reboots, "{t}");
    for pair in rebuilds.windows(2) {
        let ((t0, cost0), (t1, _)) = (pair[0], pair[1]);
        assert!(
            t1 - t0 >= 9 * cost0,
            "a rebuild of {cost0} ticks followed after only {} ticks: {t}",
            t1 - t0
        );
    }
    let resets = bulkhead_boot::transcript::guest_lines(t, "reboot-loop")
        .filter(|l| l.trim() == "mb: reset through port 0xcf9")
        .count() as u64;
    assert!(resets >= reboots, "{resets} resets, {reboots} reboots: {t}");
    let stopping = t.contains("[shell] stopping vm reboot-loop");
    assert!(
        stopping
            || t.contains(
                "[shell] vm reboot-loop stays stopped (its start after the guest's reboot is cancelled)"
            ),
        "{t}"
    );
    // `vms`: the loop's VM runs or, most of the time, waits for its paced rebuild.
    let row = t
        .lines()
        .map(|l| l.trim_start_matches('\r'))
        .find(|l| l.starts_with("reboot-loop "))
        .unwrap_or_else(|| panic!("no `vms` row for reboot-loop: {t}"));
    eprintln!("vms: {row}");
    assert!(
        row.starts_with("reboot-loop  starting   ") || row.starts_with("reboot-loop  running    "),
        "{row:?}"
    );
    let stops = t.matches("vm reboot-loop: stopped: ").count() as u64;
    assert_eq!(stops, reboots + u64::from(stopping), "{t}");
}
