//! The hypervisor shell on COM1 (issue 17), typed into through the runner's pseudo-terminal
//! (bulkhead_boot::serial_input): Ctrl-A opens the shell, `vms` lists the VMs, `stats VM`
//! counts grow between two calls, an unknown VM gets a one-line error with the usage, `stop VM`
//! stops one VM with its report while the other keeps running, then `stop` the other.

use bulkhead_boot::serial_input::Feed;
use bulkhead_tests::{boot_with_input, bundle_image, Checked};

const PROMPT: &str = "bulkhead> ";

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
        Feed::new("vm beta: console: ", "vms\r"),
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
    // The report's CPUID count is at least what the live `stats` saw before.
    let reported = run
        .exit_count("alpha", "CPUID")
        .expect("alpha's CPUID line");
    assert!(reported >= cpuids[1], "{reported} < {cpuids:?}");
}
