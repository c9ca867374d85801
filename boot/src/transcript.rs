//! Reading a serial transcript: the kernel ends every run with the line
//! `bulkhead: exit status N (name)` (docs/exit-status.md).

/// The kernel's own verdict, parsed from the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelExit {
    pub code: u8,
    pub name: String,
}

const EXIT_PREFIX: &str = "bulkhead: exit status ";

/// The last exit line of `transcript`, if any.
pub fn parse_exit(transcript: &str) -> Option<KernelExit> {
    transcript.lines().rev().find_map(|line| {
        let rest = &line[line.find(EXIT_PREFIX)? + EXIT_PREFIX.len()..];
        let (num, rest) = rest.split_once(' ')?;
        let name = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(KernelExit {
            code: num.parse().ok()?,
            name: name.to_string(),
        })
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
}
