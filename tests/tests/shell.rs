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
