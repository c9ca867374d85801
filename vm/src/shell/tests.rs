use super::commands::{self, StatsView, VmRow, VmState};
use super::*;
use crate::stats::ExitStats;
use alloc::string::String;
use alloc::vec::Vec;

const VMS: [VmName<'static>; 2] = [
    VmName {
        name: "linux",
        vcpus: 2,
    },
    VmName {
        name: "test",
        vcpus: 1,
    },
];

fn feed_all(mux: &mut Mux, bytes: &[u8]) -> Vec<Step> {
    bytes.iter().map(|&b| mux.feed(b)).collect()
}

/// Types `text` + CR into an open shell and returns the line the mux hands over.
fn enter(mux: &mut Mux, text: &str) -> String {
    for &b in text.as_bytes() {
        assert_eq!(mux.feed(b), Step::Echo(b));
    }
    assert_eq!(mux.feed(b'\r'), Step::Line);
    String::from(mux.line())
}

#[test]
fn guest_mode_ignores_everything_but_the_escape_key() {
    let mut mux = Mux::new();
    assert_eq!(mux.mode(), Mode::Guests);
    assert_eq!(feed_all(&mut mux, b"ls\r"), [Step::Nothing; 3]);
    assert_eq!(mux.stats.ignored, 3);
    assert_eq!(mux.feed(ESCAPE), Step::Opened);
    assert_eq!(mux.mode(), Mode::Shell);
    assert_eq!(mux.feed(ESCAPE), Step::Closed);
    assert_eq!(mux.mode(), Mode::Guests);
}

#[test]
fn shell_edits_and_returns_lines() {
    let mut mux = Mux::new();
    mux.feed(ESCAPE);
    assert_eq!(enter(&mut mux, "vms"), "vms");
    assert_eq!(mux.stats.lines, 1);
    // CR LF is one Enter; the LF is swallowed and the next line starts empty.
    assert_eq!(mux.feed(b'\n'), Step::Nothing);
    assert_eq!(mux.line(), "");
    assert_eq!(feed_all(&mut mux, b"stx"), b"stx".map(Step::Echo));
    assert_eq!(mux.feed(0x7f), Step::Erase(1));
    assert_eq!(mux.feed(b'o'), Step::Echo(b'o'));
    assert_eq!(mux.feed(b'\n'), Step::Line);
    assert_eq!(mux.line(), "sto");
    // Ctrl-U erases the whole line; a backspace on an empty line erases nothing.
    feed_all(&mut mux, b"abcd");
    assert_eq!(mux.feed(0x15), Step::Erase(4));
    assert_eq!(mux.feed(0x08), Step::Erase(0));
    // Control bytes and non-ASCII are not part of a command.
    assert_eq!(
        feed_all(&mut mux, &[0x1b, 0xc3, b'x']),
        [Step::Nothing, Step::Nothing, Step::Echo(b'x')]
    );
    assert_eq!(mux.feed(b'\r'), Step::Line);
    assert_eq!(mux.line(), "x");
    // An empty Enter is a line too (the prompt is printed again), not counted as a command.
    assert_eq!(mux.feed(b'\r'), Step::Line);
    assert_eq!(mux.line(), "");
    assert_eq!(mux.stats.lines, 3);
}

#[test]
fn a_long_line_is_cut_and_the_overflow_counted() {
    let mut mux = Mux::new();
    mux.feed(ESCAPE);
    let steps = feed_all(&mut mux, &[b'a'; MAX_LINE + 10]);
    assert_eq!(
        steps.iter().filter(|s| **s == Step::Echo(b'a')).count(),
        MAX_LINE
    );
    assert_eq!(steps[MAX_LINE..], [Step::Nothing; 10]);
    assert_eq!(mux.stats.line_overflow, 10);
    assert_eq!(mux.feed(b'\r'), Step::Line);
    assert_eq!(mux.line().len(), MAX_LINE);
}

#[test]
fn console_mode_forwards_every_byte_until_the_escape_key() {
    let mut mux = Mux::new();
    mux.feed(ESCAPE);
    mux.attach(1);
    assert_eq!(mux.attached(), Some(1));
    let steps = feed_all(&mut mux, b"ls\r\x7f\x03");
    let want: Vec<Step> = b"ls\r\x7f\x03"
        .iter()
        .map(|&byte| Step::ToGuest { vm: 1, byte })
        .collect();
    assert_eq!(steps, want);
    assert_eq!(mux.stats.to_guest, 5);
    assert_eq!(mux.feed(ESCAPE), Step::Detached(1));
    assert_eq!(mux.mode(), Mode::Shell);
    assert_eq!(mux.attached(), None);
    // The shell's line starts empty after the detach.
    assert_eq!(mux.feed(b'\r'), Step::Line);
    assert_eq!(mux.line(), "");
    mux.close();
    assert_eq!(mux.mode(), Mode::Guests);
}

#[test]
fn input_queue_drops_and_counts_beyond_its_bound() {
    let mut q = InputQueue::new();
    for i in 0..INPUT_QUEUE {
        q.push(i as u8);
    }
    // (Not the escape key: it always gets in, the_escape_key_gets_into_a_full_queue.)
    for _ in 0..5 {
        q.push(b'z');
    }
    assert_eq!(q.len(), INPUT_QUEUE);
    assert_eq!(q.dropped, 5);
    assert_eq!(q.free(), 0);
    assert_eq!(q.peek(), Some(0));
    assert_eq!(q.pop(), Some(0));
    assert_eq!(q.pop(), Some(1));
    assert!(q.push(0xAA));
    let mut rest = Vec::new();
    while let Some(b) = q.pop() {
        rest.push(b);
    }
    assert_eq!(rest.len(), INPUT_QUEUE - 1);
    assert_eq!(rest[0], 2);
    assert_eq!(*rest.last().unwrap(), 0xAA);
    assert!(q.is_empty());
}

#[test]
fn parses_every_command() {
    let ok = |l: &str| parse(l, &VMS).unwrap();
    assert_eq!(ok(""), Command::Empty);
    assert_eq!(ok("   "), Command::Empty);
    assert_eq!(ok("help"), Command::Help);
    assert_eq!(ok("vms"), Command::Vms);
    assert_eq!(ok("top"), Command::Top);
    assert_eq!(ok("exit"), Command::Exit);
    assert_eq!(ok("stats test"), Command::Stats(1));
    assert_eq!(ok("  console   linux "), Command::Console(0));
    assert_eq!(ok("stop test"), Command::Stop(1));
    assert_eq!(ok("start linux"), Command::Start(0));
    assert_eq!(ok("restart test"), Command::Restart(1));
    assert_eq!(ok("regs linux"), Command::Regs { vm: 0, vcpu: 0 });
    assert_eq!(ok("regs linux 1"), Command::Regs { vm: 0, vcpu: 1 });
    assert_eq!(ok("log debug"), Command::Log(LogLevel::Debug));
    assert_eq!(ok("log WARN"), Command::Log(LogLevel::Warn));
    assert_eq!(ok("log off"), Command::Log(LogLevel::Off));
    let name = |n: &str| SnapshotName::new(n).unwrap();
    assert_eq!(
        ok("snapshot linux booted-1"),
        Command::Snapshot {
            vm: 0,
            name: name("booted-1")
        }
    );
    assert_eq!(ok("snapshots"), Command::Snapshots);
    assert_eq!(
        ok("restore booted-1 test"),
        Command::Restore {
            name: name("booted-1"),
            vm: 1
        }
    );
    assert_eq!(ok("forget s_2"), Command::Forget(name("s_2")));
    assert_eq!(
        ok("clone booted-1 4"),
        Command::Clone {
            name: name("booted-1"),
            count: 4
        }
    );
    assert_eq!(name("booted-1").as_str(), "booted-1");
}

#[test]
fn snapshot_names_are_short_and_plain() {
    assert!(SnapshotName::new("").is_none());
    assert!(SnapshotName::new("a/b").is_none());
    assert!(SnapshotName::new("snap shot").is_none());
    assert!(SnapshotName::new(&"x".repeat(SnapshotName::MAX)).is_some());
    assert!(SnapshotName::new(&"x".repeat(SnapshotName::MAX + 1)).is_none());
    let err = |l: &str| alloc::format!("{}", parse(l, &VMS).unwrap_err());
    assert_eq!(
        err("snapshot linux a.b"),
        "error: `a.b` is not a snapshot name (1 to 24 letters, digits, `-`, `_`); usage: snapshot VM NAME"
    );
    assert_eq!(
        err("snapshot linux"),
        "error: missing argument; usage: snapshot VM NAME"
    );
    assert_eq!(
        err("restore s1 windows"),
        "error: no VM named `windows` (`vms` lists them); usage: restore NAME VM"
    );
    assert_eq!(err("forget"), "error: missing argument; usage: forget NAME");
    assert_eq!(
        err("clone s1"),
        "error: missing argument; usage: clone NAME N"
    );
    for bad in ["0", "17", "-1", "four"] {
        assert_eq!(
            err(&alloc::format!("clone s1 {bad}")),
            alloc::format!(
                "error: `{bad}` is not a count of clones (1 to 16); usage: clone NAME N"
            )
        );
    }
    assert_eq!(
        err("clone s1 2 3"),
        "error: unexpected `3`; usage: clone NAME N"
    );
}

#[test]
fn errors_are_one_line_with_the_usage() {
    let err = |l: &str| alloc::format!("{}", parse(l, &VMS).unwrap_err());
    assert_eq!(
        err("frobnicate x"),
        "error: unknown command `frobnicate` (type `help` for the list)"
    );
    assert_eq!(err("stats"), "error: missing argument; usage: stats VM");
    assert_eq!(
        err("stop windows"),
        "error: no VM named `windows` (`vms` lists them); usage: stop VM"
    );
    assert_eq!(err("vms now"), "error: unexpected `now`; usage: vms");
    assert_eq!(
        err("console linux test"),
        "error: unexpected `test`; usage: console VM"
    );
    assert_eq!(
        err("regs linux 2"),
        "error: `2` is not a vCPU of this VM (0..2); usage: regs VM [VCPU]"
    );
    assert_eq!(
        err("regs test -1"),
        "error: `-1` is not a vCPU of this VM (0..1); usage: regs VM [VCPU]"
    );
    assert_eq!(
        err("log loud"),
        "error: `loud` is not a log level; usage: log LEVEL"
    );
    assert_eq!(err("log"), "error: missing argument; usage: log LEVEL");
    // VM names are exact (case matters, as in bulkhead.toml).
    assert!(matches!(
        parse("stats Linux", &VMS),
        Err(ParseError::UnknownVm { name: "Linux", .. })
    ));
    for l in [
        "frobnicate",
        "stats",
        "stop windows",
        "regs linux 9",
        "log loud",
    ] {
        assert!(!err(l).contains('\n'), "{l}");
    }
}

#[test]
fn log_levels_round_trip() {
    for (name, level) in LogLevel::NAMES {
        assert_eq!(LogLevel::from_name(name), Some(level));
        assert_eq!(level.name(), name);
    }
    assert_eq!(LogLevel::from_name("verbose"), None);
}

#[test]
fn help_lists_every_command_once() {
    let mut s = String::new();
    commands::help(&mut s).unwrap();
    assert_eq!(s.lines().count(), parse::COMMANDS.len() + 1);
    assert_eq!(
        s.lines().nth(3).unwrap(),
        "  top              exits per second per VM and reason, until a key"
    );
    for (name, _, _) in parse::COMMANDS {
        assert_eq!(
            s.lines()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn vms_table() {
    let rows = [
        VmRow {
            name: "linux".into(),
            state: VmState::Running,
            vcpu_cpus: alloc::vec![0, 1],
            vcpus_running: 2,
            memory_bytes: 128 << 20,
            uptime_ticks: 123_456_789,
        },
        VmRow {
            name: "test".into(),
            state: VmState::Stopped,
            vcpu_cpus: alloc::vec![1],
            vcpus_running: 0,
            memory_bytes: 640 << 10,
            uptime_ticks: 50_000_000,
        },
    ];
    let mut s = String::new();
    commands::vms(&rows, 50_000_000, &mut s).unwrap();
    assert_eq!(
        s,
        "VM           STATE    VCPUS  CPUS       MEMORY     UPTIME\n\
         linux        running    2/2  0,1          128M     2.469s\n\
         test         stopped    0/1  1            640K     1.000s\n"
    );
}

#[test]
fn stats_view() {
    let mut exits = ExitStats::new();
    exits.record(10, 300); // CPUID
    exits.record(10, 100);
    exits.record(12, 50); // HLT
    exits.hypercalls = 7;
    let view = StatsView {
        name: "test".into(),
        state: VmState::Running,
        uptime_ticks: 25_000_000,
        exits,
        console: "lines=3 dropped=0".into(),
        devices: alloc::vec!["virtio-blk: requests=4".into()],
    };
    let mut s = String::new();
    commands::stats(&view, 50_000_000, &mut s).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "test: running for 0.500s");
    assert_eq!(
        lines[1],
        "test: exits: CPUID                  count=2 ticks=400 avg=200"
    );
    assert!(lines[2].starts_with("test: exits: HLT"), "{}", lines[2]);
    assert!(lines[2].contains("count=1 ticks=50"), "{}", lines[2]);
    assert_eq!(
        lines[3],
        "test: exits: total                  count=3 ticks=450 worst=300"
    );
    assert!(
        lines[4].starts_with("test: exits: hypercalls=7 "),
        "{}",
        lines[4]
    );
    assert_eq!(lines[5], "test: console: lines=3 dropped=0");
    assert_eq!(lines[6], "test: virtio-blk: requests=4");
    assert_eq!(lines.len(), 7);
}

#[test]
fn any_key_ends_top_and_is_not_a_command() {
    let mut mux = Mux::new();
    mux.feed(ESCAPE);
    assert_eq!(enter(&mut mux, "top"), "top");
    mux.start_top();
    assert_eq!(mux.mode(), Mode::Top);
    assert_eq!(mux.feed(b'q'), Step::TopEnded);
    assert_eq!(mux.mode(), Mode::Shell);
    // The key was not kept: the next line is only what follows it.
    assert_eq!(enter(&mut mux, "vms"), "vms");
}

fn sample(name: &str, at: u64, cpuid: u64, hlt: u64) -> top::Sample {
    let mut exits = ExitStats::default();
    for _ in 0..cpuid {
        exits.record(10, 5);
    }
    for _ in 0..hlt {
        exits.record(12, 5);
    }
    top::Sample {
        name: name.into(),
        exits,
        at,
    }
}

#[test]
fn top_prints_rates_per_vm_and_reason_busiest_first() {
    // 1000 Hz TSC; 500 ticks = 0.5 s between the samples.
    let before = [sample("a", 1000, 10, 2), sample("b", 1000, 0, 0)];
    let now = [sample("a", 1500, 60, 7), sample("b", 1500, 0, 1)];
    let mut out = String::new();
    top::refresh(&before, &now, 1000, &mut out).unwrap();
    assert_eq!(
        out,
        "top: exits per second (any key stops)\n\
         a            total      110/s  CPUID 100/s  HLT 10/s\n\
         b            total        2/s  HLT 2/s\n"
    );
}

#[test]
fn top_counts_a_restarted_or_new_vm_from_zero_and_bounds_its_reasons() {
    let mut big = ExitStats::default();
    for r in [0u16, 1, 7, 10, 12, 28, 30, 31] {
        big.record(r, 1);
    }
    let before = [top::Sample {
        name: "a".into(),
        exits: big.clone(),
        at: 0,
    }];
    // "a" restarted: fewer exits than before, so counted from zero since its new sample.
    let now = [
        sample("a", 2000, 4, 0),
        top::Sample {
            name: "c".into(),
            exits: big,
            at: 3000,
        },
    ];
    let mut out = String::new();
    top::refresh(&before, &now, 1000, &mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // No earlier sample: no rate rather than a division by zero.
    assert!(
        lines[1].starts_with("a            total        0/s"),
        "{out}"
    );
    assert_eq!(
        lines[2].matches("/s").count(),
        1 + top::REASONS_PER_VM,
        "{out}"
    );
}

#[test]
fn regs_prints_every_register_and_the_snapshot_age() {
    let mut r = regs::Registers::default();
    for (i, g) in r.gprs.iter_mut().enumerate() {
        *g = i as u64 + 1;
    }
    r.rip = 0x1000;
    r.rflags = 0x202;
    r.cr0 = 0x8000_0031;
    r.cr3 = 0x5000;
    r.cr4 = 0x20;
    r.efer = 0x500;
    r.selectors = [0x8, 0x10, 0x10, 0x10, 0, 0, 0, 0x18];
    r.at = 1000;
    let h = regs::RegsHeader {
        vm: "linux",
        vcpu: 1,
        state: "halted",
        cpu: Some(0),
        now: 3000,
    };
    let mut out = String::new();
    regs::regs(&h, &r, 1_000_000, &mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "linux vcpu 1: halted (cpu 0); registers as of its last exit, 2000 us ago"
    );
    assert_eq!(
        lines[1],
        "  rax =0000000000000001  rbx =0000000000000002  rcx =0000000000000003  rdx =0000000000000004"
    );
    assert!(lines[2].contains("rsp =0000000000000008"), "{out}");
    assert!(lines[4].ends_with("r15 =0000000000000010"), "{out}");
    assert_eq!(lines[5], "  rip =0x0000000000001000  rflags=0x00000202");
    assert_eq!(
        lines[6],
        "  cr0 =0x80000031  cr2=0x0000000000000000  cr3=0x0000000000005000  cr4=0x00000020  efer=0x500"
    );
    assert_eq!(
        lines[7],
        "  cs=0008 ss=0010 ds=0010 es=0010 fs=0000 gs=0000 ldtr=0000 tr=0018"
    );
    assert_eq!(lines.len(), 8);
}

#[test]
fn the_escape_key_is_never_held_back_by_bytes_a_guest_does_not_read() {
    let mut q = InputQueue::new();
    // Nothing to skip to: the queue is left alone.
    for &b in b"abc" {
        q.push(b);
    }
    assert_eq!(q.skip_to_escape(), 0);
    assert_eq!(q.len(), 3);
    // The escape key behind 40 bytes the attached guest cannot take: they are dropped,
    // counted, and the key is next; what came after it stays queued.
    for _ in 0..37 {
        q.push(b'x');
    }
    q.push(ESCAPE);
    q.push(b'v');
    assert_eq!(q.skip_to_escape(), 40);
    assert_eq!(q.skipped, 40);
    assert_eq!(q.pop(), Some(ESCAPE));
    assert_eq!(q.pop(), Some(b'v'));
    assert_eq!(q.skip_to_escape(), 0);
    assert!(q.is_empty());
}

#[test]
fn the_escape_key_gets_into_a_full_queue() {
    let mut q = InputQueue::new();
    // A paste the attached guest does not read: the queue fills, the rest is dropped.
    for _ in 0..INPUT_QUEUE + 10 {
        q.push(b'p');
    }
    assert_eq!((q.len(), q.dropped), (INPUT_QUEUE, 10));
    // The escape key still gets in: what was queued before it is dropped and counted.
    assert!(q.push(ESCAPE));
    assert_eq!((q.len(), q.skipped, q.dropped), (1, INPUT_QUEUE as u64, 10));
    assert_eq!(q.skip_to_escape(), 0);
    assert_eq!(q.pop(), Some(ESCAPE));
    assert!(q.is_empty());
}

#[test]
fn the_console_input_line_names_every_counter() {
    let s = InputStats {
        ignored: 1,
        line_overflow: 2,
        queue_overflow: 3,
        skipped_for_escape: 4,
        uart_overruns: 7,
        to_guest: 5,
        lines: 6,
    };
    let mut out = String::new();
    commands::input_line(&s, &mut out).unwrap();
    assert_eq!(
        out,
        "console input: lines=6 to-guest=5 ignored=1 dropped-long-line=2 dropped-queue-full=3 dropped-before-escape=4 uart-overruns=7\n"
    );
}
