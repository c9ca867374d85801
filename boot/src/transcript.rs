//! Reading a serial transcript. Three kinds of lines reach COM1 (docs/architecture.md,
//! "Console"):
//! - the hypervisor's log lines, `[<tsc ticks>] LEVEL message` (the TSC in brackets is all
//!   digits, so it can never be a VM name: names start with a letter);
//! - guest console lines, `[<vm>] text` or `[<vm> +<ticks>] text`, always prefixed with their
//!   VM's name, with control bytes filtered out;
//! - a few unprefixed lines the kernel prints itself, among them the last one of every run,
//!   `bulkhead: exit status N (name)` (docs/exit-status.md).
//!
//! A guest can print any text, but only after its `[vm] ` prefix, so every reader here anchors
//! what it looks for at the start of a line: a guest cannot forge the kernel's verdict or its
//! report lines.

/// The kernel's own verdict, parsed from the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelExit {
    pub code: u8,
    pub name: String,
}

const EXIT_PREFIX: &str = "bulkhead: exit status ";
const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// A line without the carriage returns the UART path adds.
fn clean(line: &str) -> &str {
    line.trim_matches('\r')
}

/// The last exit line of `transcript`, if any: an unprefixed line that starts with
/// `bulkhead: exit status `.
pub fn parse_exit(transcript: &str) -> Option<KernelExit> {
    transcript.lines().rev().find_map(|line| {
        let rest = clean(line).strip_prefix(EXIT_PREFIX)?;
        let (num, rest) = rest.split_once(' ')?;
        let name = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(KernelExit {
            code: num.parse().ok()?,
            name: name.to_string(),
        })
    })
}

/// The message of a hypervisor log line (`[   123456] INFO  message` → `message`), or `None`
/// for any other line.
pub fn kernel_message(line: &str) -> Option<&str> {
    kernel_message_at(line).map(|(_, message)| message)
}

/// The TSC stamp and message of a hypervisor log line (`[   123456] INFO  message` →
/// `(123456, "message")`), or `None` for any other line.
pub fn kernel_message_at(line: &str) -> Option<(u64, &str)> {
    let rest = clean(line).strip_prefix('[')?;
    let (tsc, rest) = rest.split_once(']')?;
    let tsc = tsc.trim_start();
    if tsc.is_empty() || !tsc.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix(' ')?;
    let (level, message) = rest.split_once(' ')?;
    if !LEVELS.contains(&level) {
        return None;
    }
    Some((tsc.parse().ok()?, message.trim_start()))
}

/// Whether `line` is a guest console line (`[name] ...` or `[name +ticks] ...` with a name
/// that starts with a letter).
pub fn is_guest_line(line: &str) -> bool {
    let Some(rest) = clean(line).strip_prefix('[') else {
        return false;
    };
    rest.split_once(']')
        .is_some_and(|(name, _)| name.starts_with(|c: char| c.is_ascii_lowercase()))
}

/// Every hypervisor log message of the transcript, in order.
pub fn kernel_messages(transcript: &str) -> impl Iterator<Item = &str> {
    transcript.lines().filter_map(kernel_message)
}

/// The text of `vm`'s console lines (`[vm] text` or `[vm +ticks] text`), in order.
pub fn guest_lines<'t: 'v, 'v>(
    transcript: &'t str,
    vm: &'v str,
) -> impl Iterator<Item = &'t str> + 'v {
    transcript.lines().filter_map(move |l| {
        let rest = clean(l).strip_prefix('[')?.strip_prefix(vm)?;
        let rest = match rest.strip_prefix(" +") {
            Some(ts) => {
                let (ticks, rest) = ts.split_once(']')?;
                ticks.bytes().all(|b| b.is_ascii_digit()).then_some(rest)?
            }
            None => rest.strip_prefix(']')?,
        };
        Some(rest.strip_prefix(' ').unwrap_or(rest))
    })
}

/// Whether the transcript shows `needle` where only its rightful author can put it:
/// - a needle that starts with `[` is a guest console line (or its start): it must begin a line;
/// - any other needle must be inside a hypervisor log message or an unprefixed kernel line
///   (never inside a guest's console line).
pub fn shows(transcript: &str, needle: &str) -> bool {
    if needle.starts_with('[') {
        return transcript.lines().any(|l| clean(l).starts_with(needle));
    }
    transcript.lines().any(|l| match kernel_message(l) {
        Some(message) => message.contains(needle),
        None => !is_guest_line(l) && clean(l).contains(needle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_exit_line() {
        let t = "boot\r\nbulkhead: exit status 1 (hypervisor-failure)\r\nbulkhead: exit status 17 (no-vmx)\r\n";
        assert_eq!(
            parse_exit(t),
            Some(KernelExit {
                code: 17,
                name: "no-vmx".into()
            })
        );
    }

    #[test]
    fn no_exit_line_is_none() {
        assert_eq!(parse_exit("bulkhead: exit status x (y)\nhello"), None);
        assert_eq!(parse_exit(""), None);
        assert_eq!(parse_exit("bulkhead: exit status 300 (big)"), None);
    }

    #[test]
    fn a_guest_cannot_forge_the_exit_line() {
        let t =
            "[forge] bulkhead: exit status 0 (ok)\r\n[forge +123] bulkhead: exit status 0 (ok)\r\n\
                 x bulkhead: exit status 0 (ok)\r\n";
        assert_eq!(parse_exit(t), None);
    }

    #[test]
    fn kernel_messages_are_anchored() {
        assert_eq!(
            kernel_message("[      12345] INFO  vm a: exits: total count=3\r"),
            Some("vm a: exits: total count=3")
        );
        assert_eq!(
            kernel_message("[12] ERROR vm a: not started"),
            Some("vm a: not started")
        );
        // A guest line, whatever it prints after its prefix.
        assert_eq!(
            kernel_message("[forge] INFO  vm a: exits: CPUID count=9"),
            None
        );
        assert_eq!(kernel_message("[a1] INFO  vm a: x"), None);
        assert_eq!(kernel_message("[] INFO  x"), None);
        assert_eq!(kernel_message("[12] NOTE x"), None);
        assert!(is_guest_line("[selftest] guest selftest: DONE"));
        assert!(is_guest_line("[linux +99] hello"));
        assert!(!is_guest_line("[   99] INFO  x"));
    }

    #[test]
    fn shows_keeps_each_author_in_its_place() {
        let t = "[   10] INFO  vm selftest: stopped: triple fault\r\n\
                 [forge] vm other: stopped: guest halted\r\n\
                 [forge] [selftest] guest selftest: DONE passed=21 failed=0\r\n\
                 [selftest] guest selftest: PASS abi-version\r\n\
                 bulkhead: PANIC (hypervisor bug): boom\r\n";
        assert!(shows(t, "vm selftest: stopped: triple fault"));
        assert!(!shows(t, "vm other: stopped"));
        assert!(shows(t, "[selftest] guest selftest: PASS abi-version"));
        assert!(!shows(t, "[selftest] guest selftest: DONE"));
        assert!(shows(t, "bulkhead: PANIC"));
    }

    #[test]
    fn guest_lines_belong_to_their_vm() {
        let t = "[a] one\r\n[a +42] two\r\n[ab] three\r\n[b] [a] four\r\n[a +x] five\r\n";
        assert_eq!(guest_lines(t, "a").collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(guest_lines(t, "b").collect::<Vec<_>>(), ["[a] four"]);
    }
}
