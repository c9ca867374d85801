//! Host tests: a `Vec`-backed fake physical memory, unit tests and a
//! property test against a reference model.

mod fake;
mod prop;
mod unit;
