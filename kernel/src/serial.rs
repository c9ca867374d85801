//! COM1 console (a 16550 through the `uart_16550` crate) behind the `log` facade, with a TSC
//! timestamp on every line.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::LSR;
use uart_16550::{Config, Uart16550};

/// COM1's base I/O port on PC-compatible machines.
const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

struct Console<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Console<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.send_bytes_exact(b"\r");
            }
            self.0.send_bytes_exact(&[b]);
        }
        Ok(())
    }
}

/// Initialises COM1 at 115200 8-N-1. Output before this call is dropped.
pub fn init() {
    // SAFETY: 0x3f8..0x3ff is COM1 on every PC platform Bulkhead boots on, and only this
    // module touches it (through the PORT mutex) for the kernel's whole lifetime.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    let config = Config {
        baud_rate: uart_16550::BaudRate::Baud115200,
        ..Config::DEFAULT
    };
    // A machine without COM1 (some laptops) still boots: output then goes nowhere.
    if uart.init(config).is_ok() {
        *PORT.lock() = Some(uart);
    }
}

/// Writes formatted text to COM1.
pub fn print(args: fmt::Arguments) {
    if let Some(uart) = PORT.lock().as_mut() {
        let _ = Console(uart).write_fmt(args);
    }
}

/// Writes to COM1 without waiting for the lock: for the panic and exception paths, which may
/// have interrupted a holder of the lock on this CPU.
pub fn print_emergency(args: fmt::Arguments) {
    // SAFETY: the lock holder (if any) was interrupted on this CPU and never resumes (the
    // emergency paths end the run), so taking the port over cannot race with it.
    unsafe { PORT.force_unlock() };
    print(args);
}

/// Waits until the UART has shifted out every byte (LSR.TEMT), so nothing is lost when the
/// emulator is shut down right after.
pub fn drain() {
    if let Some(uart) = PORT.lock().as_mut() {
        for _ in 0..10_000_000 {
            if uart.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

#[macro_export]
macro_rules! println {
    () => { $crate::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            print(format_args!(
                "[{:>14}] {:<5} {}\n",
                crate::arch::rdtsc(),
                record.level(),
                record.args()
            ));
        }
    }

    fn flush(&self) {
        drain();
    }
}

static LOGGER: Logger = Logger;

/// Installs the serial logger at `level`.
pub fn init_logger(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
