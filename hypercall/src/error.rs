//! Error codes (`RAX = -code`) and the encoding of results.

use core::fmt;

/// A hypercall error. The numbers are stable ABI: `RAX = -(code)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum HcError {
    /// The call number is not assigned.
    UnknownCall = 1,
    /// A guest-physical buffer overflows 64 bits or is not entirely inside guest RAM.
    BadAddress = 2,
    /// A zero length or count where that is not allowed, or a buffer too small for the result.
    BadLength = 3,
    /// An invalid argument value (unknown mode, misaligned batch, non-zero reserved argument).
    BadArgument = 4,
    /// `VMCALL` at CPL > 0.
    NotPermitted = 5,
    /// A length or count above its maximum.
    TooLarge = 6,
    /// The call exists but is not offered to this VM (its feature bit is clear).
    Unsupported = 7,
    /// A `MULTICALL` entry that is itself a `MULTICALL`.
    Nested = 8,
}

impl HcError {
    /// Every error, in code order.
    pub const ALL: [HcError; 8] = [
        HcError::UnknownCall,
        HcError::BadAddress,
        HcError::BadLength,
        HcError::BadArgument,
        HcError::NotPermitted,
        HcError::TooLarge,
        HcError::Unsupported,
        HcError::Nested,
    ];

    /// The positive error code.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The value returned in RAX: `-code`.
    pub const fn to_result(self) -> i64 {
        -(self as i64)
    }

    /// The error with this positive code, if this crate knows it.
    pub const fn from_code(code: i64) -> Option<HcError> {
        match code {
            1 => Some(HcError::UnknownCall),
            2 => Some(HcError::BadAddress),
            3 => Some(HcError::BadLength),
            4 => Some(HcError::BadArgument),
            5 => Some(HcError::NotPermitted),
            6 => Some(HcError::TooLarge),
            7 => Some(HcError::Unsupported),
            8 => Some(HcError::Nested),
            _ => None,
        }
    }

    /// The ABI name, as in the document's error table.
    pub const fn name(self) -> &'static str {
        match self {
            HcError::UnknownCall => "UnknownCall",
            HcError::BadAddress => "BadAddress",
            HcError::BadLength => "BadLength",
            HcError::BadArgument => "BadArgument",
            HcError::NotPermitted => "NotPermitted",
            HcError::TooLarge => "TooLarge",
            HcError::Unsupported => "Unsupported",
            HcError::Nested => "Nested",
        }
    }

    /// A one-line description.
    pub const fn description(self) -> &'static str {
        match self {
            HcError::UnknownCall => "unknown hypercall number",
            HcError::BadAddress => "guest-physical buffer overflows or is outside guest RAM",
            HcError::BadLength => "zero or too small length",
            HcError::BadArgument => "invalid argument",
            HcError::NotPermitted => "hypercall from CPL > 0",
            HcError::TooLarge => "length or count above the maximum",
            HcError::Unsupported => "hypercall not offered to this VM",
            HcError::Nested => "nested MULTICALL",
        }
    }
}

impl fmt::Display for HcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.name(),
            self.code(),
            self.description()
        )
    }
}

/// A failed hypercall as a guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallError {
    /// An error this crate knows.
    Hc(HcError),
    /// A negative result with a code this crate does not know (a newer hypervisor); the raw
    /// RAX value.
    Unknown(i64),
    /// Guest side only: Bulkhead was not detected, so no `VMCALL` was executed.
    NoHypervisor,
}

impl From<HcError> for CallError {
    fn from(e: HcError) -> CallError {
        CallError::Hc(e)
    }
}

impl PartialEq<HcError> for CallError {
    fn eq(&self, other: &HcError) -> bool {
        *self == CallError::Hc(*other)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Hc(e) => e.fmt(f),
            CallError::Unknown(raw) => write!(f, "unknown hypercall error (result {raw})"),
            CallError::NoHypervisor => f.write_str("Bulkhead hypervisor not detected"),
        }
    }
}

/// Encodes a call's outcome as the RAX value: the success value, or `-code`.
///
/// Success values are at most `i64::MAX` by construction in v1 (at most 4096 or a version);
/// a larger one saturates rather than turning negative.
pub const fn encode(result: Result<u64, HcError>) -> i64 {
    match result {
        Ok(v) if v > i64::MAX as u64 => i64::MAX,
        Ok(v) => v as i64,
        Err(e) => e.to_result(),
    }
}

/// Decodes a RAX value (64-bit guests) into the success value or the error.
pub const fn decode(rax: i64) -> Result<u64, CallError> {
    if rax >= 0 {
        return Ok(rax as u64);
    }
    // `rax < 0`, so `-rax` fits except for i64::MIN, which `checked_neg` turns into None.
    match rax.checked_neg() {
        Some(code) => match HcError::from_code(code) {
            Some(e) => Err(CallError::Hc(e)),
            None => Err(CallError::Unknown(rax)),
        },
        None => Err(CallError::Unknown(rax)),
    }
}
