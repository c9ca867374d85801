//! Shared helpers for Bulkhead's integration tests: find the images `scripts/test` built, boot
//! them on a platform, and assert on the transcript with the whole transcript shown on failure.

use bulkhead_boot::image::default_image_dir;
use bulkhead_boot::{Platform, RunOutcome, RunSpec};
use std::path::PathBuf;
use std::time::Duration;

/// The directory with `bulkhead-bios.img` / `bulkhead-uefi.img`: `$BULKHEAD_IMAGE_DIR`, else
/// `target/images`.
pub fn image_dir() -> PathBuf {
    std::env::var_os("BULKHEAD_IMAGE_DIR").map_or_else(default_image_dir, PathBuf::from)
}

/// The image a platform boots.
pub fn image_for(platform: Platform) -> PathBuf {
    let name = if platform.uses_uefi() {
        "bulkhead-uefi.img"
    } else {
        "bulkhead-bios.img"
    };
    let path = image_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the images first with `cargo run -p bulkhead-boot -- build` (scripts/test does)",
        path.display()
    );
    path
}

/// Boots the default image of `platform` with `cpu` (a Bochs model or a QEMU -cpu) and
/// returns the outcome. Panics (with the emulator's log) when the emulator cannot be run.
pub fn boot(platform: Platform, cpu: &str, timeout_secs: u64) -> Checked {
    let mut spec = RunSpec::new(platform, image_for(platform));
    spec.cpu_model = cpu.to_string();
    spec.timeout = Duration::from_secs(timeout_secs);
    let outcome = bulkhead_boot::run(&spec)
        .unwrap_or_else(|e| panic!("could not run {}: {e}", platform.name()));
    eprintln!("{} ({cpu}): {}", platform.name(), outcome.summary());
    Checked {
        outcome,
        label: format!("{} with cpu {cpu}", platform.name()),
    }
}

/// A run's outcome with assertion helpers that print the transcript when they fail.
#[derive(Debug)]
pub struct Checked {
    pub outcome: RunOutcome,
    label: String,
}

impl Checked {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n--- {} ---\n--- transcript ---\n{}\n--- emulator log tail ---\n{}",
            self.label,
            self.outcome.summary(),
            self.outcome.transcript,
            self.outcome.emulator_log_tail
        );
    }

    /// Asserts the transcript contains `needle`.
    pub fn saw(&self, needle: &str) -> &Self {
        if !self.outcome.saw(needle) {
            self.fail(&format!("expected the transcript to contain {needle:?}"));
        }
        self
    }

    /// Asserts the transcript does not contain `needle`.
    pub fn not_saw(&self, needle: &str) -> &Self {
        if self.outcome.saw(needle) {
            self.fail(&format!(
                "expected the transcript NOT to contain {needle:?}"
            ));
        }
        self
    }

    /// Asserts the kernel ended with exit status `code` named `name`.
    pub fn exited(&self, code: u8, name: &str) -> &Self {
        match &self.outcome.exit {
            Some(e) if e.code == code && e.name == name => self,
            _ => self.fail(&format!("expected kernel exit status {code} ({name})")),
        }
    }

    /// The transcript line containing `needle` (first one).
    pub fn line(&self, needle: &str) -> &str {
        self.outcome
            .transcript
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| self.fail(&format!("no line contains {needle:?}")))
    }
}
