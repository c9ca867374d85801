//! The person's session (tests/fixtures/shell-session.txt, typed under tmux into Bochs) replayed
//! through the multiplexer and the parser: its keys give the command lines the terminal
//! showed after the prompt (backspaces applied), the bytes the attached guest received give
//! the commands its shell echoed, and what the shell answers without the running machine
//! (`vms`'s table from its own values, a bad VM's error) is what the terminal showed.

use super::commands::{self, VmRow, VmState};
use super::*;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

const SESSION: &str = include_str!("../../../tests/fixtures/shell-session.txt");

const VMS: [VmName<'static>; 2] = [
    VmName {
        name: "linux",
        vcpus: 1,
    },
    VmName {
        name: "forever",
        vcpus: 1,
    },
];

/// The fixture's `# keys:` lines as bytes: `"text"` literally, `C-a` Ctrl-A, `Enter` CR,
/// `BSpace` DEL (what tmux sends for them).
fn keys() -> Vec<u8> {
    let mut out = Vec::new();
    for line in SESSION.lines().filter_map(|l| l.strip_prefix("# keys: ")) {
        let mut rest = line.trim();
        while !rest.is_empty() {
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').expect("closing quote");
                out.extend_from_slice(&quoted.as_bytes()[..end]);
                rest = quoted[end + 1..].trim_start();
                continue;
            }
            let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(match word {
                "C-a" => ESCAPE,
                "Enter" => b'\r',
                "BSpace" => 0x7f,
                other => panic!("unknown key {other}"),
            });
            rest = tail.trim_start();
        }
    }
    out
}

/// The terminal's lines (the fixture without its `#` header).
fn screen() -> Vec<&'static str> {
    SESSION.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The lines after `from` up to (without) the next prompt line.
fn answer<'a>(screen: &[&'a str], from: usize) -> Vec<&'a str> {
    screen[from + 1..]
        .iter()
        .take_while(|l| !l.starts_with(PROMPT))
        .copied()
        .collect()
}

/// A `vms` row as the terminal showed it, read back into the values it was made from (TSC at
/// 1 kHz: the uptime's milliseconds are its ticks).
fn row(line: &str) -> VmRow {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.len(), 6, "{line}");
    let (running, count) = w[2].split_once('/').unwrap();
    let cpus: Vec<usize> = w[3].split(',').map(|c| c.parse().unwrap()).collect();
    assert_eq!(cpus.len(), count.parse::<usize>().unwrap());
    let (secs, ms) = w[5].strip_suffix('s').unwrap().split_once('.').unwrap();
    VmRow {
        name: w[0].to_string(),
        state: match w[1] {
            "running" => VmState::Running,
            "stopping" => VmState::Stopping,
            "stopped" => VmState::Stopped,
            "starting" => VmState::Starting,
            s => panic!("state {s}"),
        },
        vcpu_cpus: cpus,
        vcpus_running: running.parse().unwrap(),
        memory_bytes: w[4].strip_suffix('M').unwrap().parse::<u64>().unwrap() << 20,
        uptime_ticks: secs.parse::<u64>().unwrap() * 1000 + ms.parse::<u64>().unwrap(),
    }
}

#[test]
fn the_persons_session_replays_through_the_mux_and_the_parser() {
    let screen = screen();
    let mut mux = Mux::new();
    let mut lines: Vec<String> = Vec::new();
    let mut commands: Vec<Command> = Vec::new();
    let mut typed_to_guest = String::new();
    let mut guest_commands: Vec<String> = Vec::new();
    let (mut opened, mut detached) = (0, 0);
    for b in keys() {
        match mux.feed(b) {
            Step::Opened => opened += 1,
            Step::Detached(vm) => {
                assert_eq!(vm, 0);
                detached += 1;
            }
            Step::ToGuest { vm, byte } => {
                assert_eq!(vm, 0, "only `linux` is attached");
                match byte {
                    b'\r' => guest_commands.push(core::mem::take(&mut typed_to_guest)),
                    // The guest's line discipline erases (busybox's line editing).
                    0x7f => {
                        typed_to_guest.pop();
                    }
                    b => typed_to_guest.push(char::from(b)),
                }
            }
            Step::Line => {
                let line = mux.line().to_string();
                let command = parse(&line, &VMS);
                // What the kernel's shell does with the command, for the mux.
                match command {
                    Ok(Command::Console(vm)) => mux.attach(vm),
                    Ok(Command::Exit) => mux.close(),
                    Ok(Command::Top) => mux.start_top(),
                    _ => {}
                }
                if let Err(e) = &command {
                    // A bad line answers with one line: the error and the usage.
                    let at = screen
                        .iter()
                        .position(|l| *l == alloc::format!("{PROMPT}{line}"))
                        .expect("the bad line on the terminal");
                    assert_eq!(answer(&screen, at), [e.to_string()]);
                } else {
                    commands.push(command.unwrap());
                }
                lines.push(line);
            }
            Step::Nothing | Step::Closed | Step::Echo(_) | Step::Erase(_) | Step::TopEnded => {}
        }
    }
    assert_eq!((opened, detached), (1, 1));
    assert!(screen.contains(&"[shell] bulkhead shell: `help` lists the commands, Ctrl-A closes it"));
    assert!(screen.contains(&"[shell] detached from vm linux"));
    // The command lines the keys make (backspaces applied) are those the terminal showed.
    let shown: Vec<&str> = screen
        .iter()
        .filter_map(|l| l.strip_prefix(PROMPT))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines, shown);
    assert_eq!(
        lines,
        [
            "vms",
            "stats nosuch",
            "console linux",
            "stop forever",
            "vms",
            "console linux"
        ]
    );
    assert_eq!(
        commands,
        [
            Command::Vms,
            Command::Console(0),
            Command::Stop(1),
            Command::Vms,
            Command::Console(0)
        ]
    );
    // `vms`: the table the shell formats from the values it shows is what the terminal showed.
    let mut tables = 0;
    for (at, _) in screen
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "bulkhead> vms")
    {
        let shown = answer(&screen, at);
        let rows: Vec<VmRow> = shown[1..].iter().map(|l| row(l)).collect();
        let mut out = String::new();
        commands::vms(&rows, 1000, &mut out).unwrap();
        assert_eq!(out.lines().collect::<Vec<_>>(), shown);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["linux", "forever"]
        );
        tables += 1;
    }
    assert_eq!(tables, 2);
    // `stop forever` was between the two tables: forever running, then stopped.
    let states: Vec<&str> = screen
        .iter()
        .filter(|l| l.starts_with("forever "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(states, ["running", "stopped"]);
    // The bytes the guest received are the commands its shell echoed, in order, and each
    // echo's output follows it.
    assert_eq!(
        guest_commands,
        ["echo hello-from-shell", "echo typo fixed", "exit"]
    );
    let mut from = 0;
    for command in &guest_commands {
        let echoed = alloc::format!("[linux] / # {command}");
        let at = from
            + screen[from..]
                .iter()
                .position(|l| *l == echoed)
                .unwrap_or_else(|| panic!("no {echoed:?}"));
        if let Some(words) = command.strip_prefix("echo ") {
            assert_eq!(screen[at + 1], alloc::format!("[linux] {words}"));
        }
        from = at + 1;
    }
    assert_eq!(
        mux.stats.to_guest,
        guest_commands
            .iter()
            .map(|c| c.len() as u64 + 1)
            .sum::<u64>()
            + 4,
        "every byte typed while attached went to the guest (`ko` and the two DELs too)"
    );
}
