//! Errors of the host tool, each with what to do about it.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum BootError {
    /// A file or directory operation failed.
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An emulator or firmware file is missing.
    Missing { what: &'static str, path: PathBuf },
    /// Building the kernel failed.
    KernelBuild(String),
    /// The bootloader crate could not create a disk image.
    Image { kind: &'static str, message: String },
    /// The requested platform cannot run on this machine.
    PlatformUnavailable { platform: &'static str, why: String },
    /// A bundle directory cannot be packed (bad configuration, bad file name).
    Bundle(String),
    /// A configuration file is malformed, or cannot be converted (the message has its place).
    Config(String),
    /// A command-line argument is wrong.
    Usage(String),
    /// A disk store operation failed (the message names the drive and what to do).
    Store(String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            BootError::Missing { what, path } => {
                write!(
                    f,
                    "{what} not found at {}; run scripts/setup to install it",
                    path.display()
                )
            }
            BootError::KernelBuild(m) => write!(f, "building the kernel failed: {m}"),
            BootError::Image { kind, message } => {
                write!(f, "creating the {kind} disk image failed: {message}")
            }
            BootError::PlatformUnavailable { platform, why } => {
                write!(f, "platform {platform} is not available here: {why}")
            }
            BootError::Bundle(m) => write!(f, "bundle: {m}"),
            BootError::Config(m) => write!(f, "{m}"),
            BootError::Usage(m) => write!(f, "{m} (see --help)"),
            BootError::Store(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for BootError {}

pub(crate) fn io(
    what: impl Into<String>,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> BootError {
    let (what, path) = (what.into(), path.into());
    move |source| BootError::Io { what, path, source }
}
