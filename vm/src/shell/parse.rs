//! The shell's command language: one command per line, words separated by spaces, VMs named
//! as in `bulkhead.toml`. A line that does not parse gives a [`ParseError`] whose message is
//! one line: what is wrong and the command's usage.

use core::fmt;

/// A VM as the parser sees it: its name and how many vCPUs it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmName<'a> {
    pub name: &'a str,
    pub vcpus: usize,
}

/// `log LEVEL`: the hypervisor's log level (the `log` crate's filter, by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const NAMES: [(&'static str, LogLevel); 6] = [
        ("off", LogLevel::Off),
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];

    pub fn from_name(name: &str) -> Option<LogLevel> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, l)| l)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|&&(_, l)| l == self)
            .map_or("?", |&(n, _)| n)
    }
}

/// A parsed command. VMs are indices into the slice given to [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Help,
    Vms,
    Stats(usize),
    Top,
    Console(usize),
    Stop(usize),
    Start(usize),
    Restart(usize),
    Regs {
        vm: usize,
        vcpu: usize,
    },
    Log(LogLevel),
    Exit,
    /// `snapshot VM NAME`: pause VM, take its snapshot as NAME, let it run on.
    Snapshot {
        vm: usize,
        name: SnapshotName,
    },
    /// `snapshots`: the snapshots held.
    Snapshots,
    /// `restore NAME VM`: a stopped VM starts from snapshot NAME.
    Restore {
        name: SnapshotName,
        vm: usize,
    },
    /// `clone NAME N`: N stopped clones of snapshot NAME (`from-snapshot`) start.
    Clone {
        name: SnapshotName,
        count: usize,
    },
    /// `forget NAME`: the snapshot's memory is given back.
    Forget(SnapshotName),
    /// An empty line.
    Empty,
}

/// A snapshot's name: 1 to [`SnapshotName::MAX`] letters, digits, `-` or `_` (held inline,
/// so a [`Command`] stays `Copy`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SnapshotName {
    bytes: [u8; SnapshotName::MAX],
    len: u8,
}

impl SnapshotName {
    pub const MAX: usize = 24;

    /// `name` if it is a valid snapshot name.
    pub fn new(name: &str) -> Option<Self> {
        let ok = (1..=Self::MAX).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(SnapshotName {
            bytes,
            len: name.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII was accepted.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The commands `help` lists: (name, usage, what it does).
pub const COMMANDS: [(&str, &str, &str); 16] = [
    ("help", "help", "list the commands"),
    (
        "vms",
        "vms",
        "every VM: state, vCPUs and their CPUs, memory, uptime",
    ),
    (
        "stats",
        "stats VM",
        "VM's live exit counts and ticks per reason, device counters",
    ),
    (
        "top",
        "top",
        "exits per second per VM and reason, until a key",
    ),
    (
        "console",
        "console VM",
        "attach the terminal to VM's UART (Ctrl-A detaches)",
    ),
    ("stop", "stop VM", "stop VM (its report is printed)"),
    (
        "start",
        "start VM",
        "start a stopped VM from its configuration (a clone: from its snapshot)",
    ),
    ("restart", "restart VM", "stop VM, then start it again"),
    (
        "regs",
        "regs VM [VCPU]",
        "a vCPU's registers (default vCPU 0)",
    ),
    (
        "log",
        "log LEVEL",
        "hypervisor log level: off|error|warn|info|debug|trace",
    ),
    (
        "snapshot",
        "snapshot VM NAME",
        "pause VM, keep its state as snapshot NAME, let it run on",
    ),
    (
        "snapshots",
        "snapshots",
        "the snapshots held, with their sizes",
    ),
    (
        "restore",
        "restore NAME VM",
        "start stopped VM from snapshot NAME (same configuration)",
    ),
    (
        "clone",
        "clone NAME N",
        "start N stopped VMs configured from-snapshot = NAME",
    ),
    (
        "forget",
        "forget NAME",
        "drop snapshot NAME, freeing its memory",
    ),
    ("exit", "exit", "close the shell (or Ctrl-A)"),
];

/// `clone NAME N` starts at most this many clones (the configuration's VM limit).
pub const MAX_CLONES_AT_ONCE: usize = crate::config::MAX_VMS;

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError<'a> {
    UnknownCommand(&'a str),
    /// `usage` is the command's usage line.
    MissingArgument {
        usage: &'static str,
    },
    ExtraArgument {
        arg: &'a str,
        usage: &'static str,
    },
    UnknownVm {
        name: &'a str,
        usage: &'static str,
    },
    BadVcpu {
        arg: &'a str,
        vcpus: usize,
        usage: &'static str,
    },
    BadLevel {
        arg: &'a str,
        usage: &'static str,
    },
    BadSnapshotName {
        arg: &'a str,
        usage: &'static str,
    },
    /// `clone`: a count that is not 1 to [`MAX_CLONES_AT_ONCE`].
    BadCount {
        arg: &'a str,
        usage: &'static str,
    },
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(c) => {
                write!(f, "error: unknown command `{c}` (type `help` for the list)")
            }
            ParseError::MissingArgument { usage } => {
                write!(f, "error: missing argument; usage: {usage}")
            }
            ParseError::ExtraArgument { arg, usage } => {
                write!(f, "error: unexpected `{arg}`; usage: {usage}")
            }
            ParseError::UnknownVm { name, usage } => write!(
                f,
                "error: no VM named `{name}` (`vms` lists them); usage: {usage}"
            ),
            ParseError::BadVcpu { arg, vcpus, usage } => write!(
                f,
                "error: `{arg}` is not a vCPU of this VM (0..{vcpus}); usage: {usage}"
            ),
            ParseError::BadLevel { arg, usage } => {
                write!(f, "error: `{arg}` is not a log level; usage: {usage}")
            }
            ParseError::BadSnapshotName { arg, usage } => write!(
                f,
                "error: `{arg}` is not a snapshot name (1 to {} letters, digits, `-`, `_`); usage: {usage}",
                SnapshotName::MAX
            ),
            ParseError::BadCount { arg, usage } => write!(
                f,
                "error: `{arg}` is not a count of clones (1 to {}); usage: {usage}",
                MAX_CLONES_AT_ONCE
            ),
        }
    }
}

/// The next word, a VM's name.
fn vm_arg<'a>(
    words: &mut core::str::SplitAsciiWhitespace<'a>,
    vms: &[VmName<'_>],
    usage: &'static str,
) -> Result<usize, ParseError<'a>> {
    let arg = words.next().ok_or(ParseError::MissingArgument { usage })?;
    vms.iter()
        .position(|v| v.name == arg)
        .ok_or(ParseError::UnknownVm { name: arg, usage })
}

/// Parses one command line against the VMs `vms`.
pub fn parse<'a>(line: &'a str, vms: &[VmName<'_>]) -> Result<Command, ParseError<'a>> {
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(Command::Empty);
    };
    let Some(&(name, usage, _)) = COMMANDS.iter().find(|(n, _, _)| *n == name) else {
        return Err(ParseError::UnknownCommand(name));
    };
    let vm = |words: &mut core::str::SplitAsciiWhitespace<'a>| vm_arg(words, vms, usage);
    let snap = |words: &mut core::str::SplitAsciiWhitespace<'a>| {
        let arg = words.next().ok_or(ParseError::MissingArgument { usage })?;
        SnapshotName::new(arg).ok_or(ParseError::BadSnapshotName { arg, usage })
    };
    let command = match name {
        "help" => Command::Help,
        "vms" => Command::Vms,
        "top" => Command::Top,
        "exit" => Command::Exit,
        "stats" => Command::Stats(vm(&mut words)?),
        "console" => Command::Console(vm(&mut words)?),
        "stop" => Command::Stop(vm(&mut words)?),
        "start" => Command::Start(vm(&mut words)?),
        "restart" => Command::Restart(vm(&mut words)?),
        "snapshot" => {
            let vm = vm(&mut words)?;
            Command::Snapshot {
                vm,
                name: snap(&mut words)?,
            }
        }
        "snapshots" => Command::Snapshots,
        "restore" => {
            let name = snap(&mut words)?;
            Command::Restore {
                name,
                vm: vm(&mut words)?,
            }
        }
        "clone" => {
            let name = snap(&mut words)?;
            let arg = words.next().ok_or(ParseError::MissingArgument { usage })?;
            let count = match arg.parse::<usize>() {
                Ok(n) if (1..=MAX_CLONES_AT_ONCE).contains(&n) => n,
                _ => return Err(ParseError::BadCount { arg, usage }),
            };
            Command::Clone { name, count }
        }
        "forget" => Command::Forget(snap(&mut words)?),
        "regs" => {
            let vm = vm(&mut words)?;
            let vcpus = vms[vm].vcpus;
            let vcpu = match words.next() {
                None => 0,
                Some(arg) => match arg.parse::<usize>() {
                    Ok(n) if n < vcpus => n,
                    _ => return Err(ParseError::BadVcpu { arg, vcpus, usage }),
                },
            };
            Command::Regs { vm, vcpu }
        }
        "log" => {
            let arg = words.next().ok_or(ParseError::MissingArgument { usage })?;
            let level = LogLevel::from_name(arg).ok_or(ParseError::BadLevel { arg, usage })?;
            Command::Log(level)
        }
        _ => return Err(ParseError::UnknownCommand(name)),
    };
    if let Some(arg) = words.next() {
        return Err(ParseError::ExtraArgument { arg, usage });
    }
    Ok(command)
}
