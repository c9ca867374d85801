//! [`LegacyPlatform`]: the PC devices a `nolapic` Linux guest needs, owned together so that
//! devices can raise interrupts on the PIC while they handle an access.
//!
//! | Ports          | Device                                                   |
//! |----------------|----------------------------------------------------------|
//! | 0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1 | [`Pic`] (8259A pair + ELCR)           |
//! | 0x40-0x43, 0x61 | [`Pit`] (8254 + port B)                                 |
//! | 0x70-0x71      | [`Rtc`] (MC146818)                                       |
//! | 0x80-0x8F      | [`DmaPages`] (0x80 I/O-delay sink, page registers)       |
//! | 0x3F8-0x3FF    | [`Uart`] (16550A COM1, IRQ 4)                            |
//! | 0x600-0x605, 0xCF9 | [`AcpiPm`] (PM1a event/control blocks, reset register), only with [`PlatformConfig::acpi_pm`] |
//! | anything else  | [`IoBus`]: run-time devices, else unclaimed (all ones, counted) |
//!
//! Per exit the hypervisor calls [`LegacyPlatform::io_read`] / [`LegacyPlatform::io_write`]
//! for I/O instructions, [`LegacyPlatform::tick`] when its timer for
//! [`LegacyPlatform::next_deadline_tsc`] fires (every access also ticks), and before VM entry
//! [`LegacyPlatform::pending_vector`] → [`LegacyPlatform::acknowledge`] to inject an external
//! interrupt when the guest can take one (RFLAGS.IF and no blocking), or interrupt-window
//! exiting when it cannot.

use alloc::boxed::Box;

use super::acpi_pm::{self, AcpiPm, PowerRequest};
use super::dma_page::{self, DmaPages};
use super::irq_lines::IrqLines;
use super::pic::{self, Pic};
use super::pit::{self, Pit};
use super::rtc::{self, Rtc};
use super::state;
use super::uart::Uart;
use crate::io::{
    AccessSize, ConsoleBuffer, ConsoleSink, DeviceId, IoBus, IoContext, IoError, IrqSink,
    PortDevice, UnclaimedStats,
};
use crate::snapshot::codec::{Dec, Enc};

/// Construction parameters of a [`LegacyPlatform`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformConfig {
    /// TSC frequency in Hz (time base of the PIT and RTC).
    pub tsc_hz: u64,
    /// TSC value at which `wall_clock_secs` holds.
    pub boot_tsc: u64,
    /// Wall-clock time for the RTC, seconds since the Unix epoch.
    pub wall_clock_secs: u64,
    /// Guest RAM size for the CMOS memory-size bytes (0 leaves them zero).
    pub ram_bytes: u64,
    /// Capacity of the console buffer in bytes.
    pub console_capacity: usize,
    /// The ACPI PM1 blocks and reset register ([`AcpiPm`]): set for guests given ACPI tables
    /// (`vm::acpi`), whose FADT names these ports. Off by default: the ports stay unclaimed.
    pub acpi_pm: bool,
    /// The IOAPIC's APIC ID (the MADT's IOAPIC entry names the same).
    pub ioapic_id: u8,
}

impl PlatformConfig {
    /// Defaults for a TSC of `tsc_hz`: clock at the epoch, no RAM bytes, 4 KiB console.
    pub const fn new(tsc_hz: u64) -> Self {
        Self {
            tsc_hz,
            boot_tsc: 0,
            wall_clock_secs: 0,
            ram_bytes: 0,
            console_capacity: ConsoleBuffer::DEFAULT_CAPACITY,
            acpi_pm: false,
            ioapic_id: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Pic,
    Pit,
    Rtc,
    Dma,
    Uart,
    AcpiPm,
}

/// ISA lines of the built-in devices (docs/vm-platform.md).
const PIT_IRQ: u8 = 0;
const UART_IRQ: u8 = 4;
/// The 16550's scratch register, as an offset from its base (PC16550D datasheet).
const UART_SCRATCH: u16 = 7;

/// The built-in devices' state as [`LegacyPlatform::load_state`] decodes it before it
/// replaces the platform's (so a refused load changes nothing).
struct DecodedState {
    lines: IrqLines,
    pit: Pit,
    rtc: Rtc,
    uart: Uart,
    dma: DmaPages,
    acpi_pm: Option<AcpiPm>,
}

/// The legacy PC platform: PIC, PIT, RTC, COM1, DMA page registers, plus an [`IoBus`] for
/// everything else, and the console buffer COM1 writes into.
#[derive(Debug)]
pub struct LegacyPlatform {
    /// The 8259A pair and the IOAPIC behind the ISA lines (irq_lines.rs).
    lines: IrqLines,
    pit: Pit,
    rtc: Rtc,
    uart: Uart,
    dma: DmaPages,
    acpi_pm: Option<AcpiPm>,
    bus: IoBus,
    console: ConsoleBuffer,
}

impl LegacyPlatform {
    /// Builds the platform. The built-in port ranges are reserved on the bus, so
    /// [`LegacyPlatform::register`] rejects devices that would overlap them.
    pub fn new(config: PlatformConfig) -> Self {
        let mut rtc = Rtc::new(config.wall_clock_secs, config.boot_tsc, config.tsc_hz);
        if config.ram_bytes != 0 {
            rtc.set_memory_size(config.ram_bytes);
        }
        let uart = Uart::com1();
        let mut bus = IoBus::new();
        let ranges: [(u16, u16, &'static str); 8] = [
            (pic::MASTER_CMD, pic::MASTER_DATA, "pic"),
            (pic::SLAVE_CMD, pic::SLAVE_DATA, "pic"),
            (pic::ELCR_MASTER, pic::ELCR_SLAVE, "elcr"),
            (pit::PORT_COUNTER0, pit::PORT_CONTROL, "pit"),
            (pit::PORT_B, pit::PORT_B, "port-b"),
            (rtc::PORT_INDEX, rtc::PORT_DATA, "rtc"),
            (dma_page::FIRST, dma_page::LAST, "dma-page"),
            (uart.base(), uart.base() + 7, "uart"),
        ];
        for (first, last, name) in ranges {
            // Fixed, disjoint ranges on an empty bus: cannot fail.
            let _ = bus.reserve(first, last, name);
        }
        if config.acpi_pm {
            let pm1_last = acpi_pm::PM1A_CNT_BLK + u16::from(acpi_pm::PM1_CNT_LEN) - 1;
            // Fixed ranges disjoint from the ones above: cannot fail.
            let _ = bus.reserve(acpi_pm::PM1A_EVT_BLK, pm1_last, "acpi-pm");
            let _ = bus.reserve(acpi_pm::RESET_PORT, acpi_pm::RESET_PORT, "acpi-reset");
        }
        Self {
            lines: IrqLines::new(config.ioapic_id),
            pit: Pit::new(config.tsc_hz),
            rtc,
            uart,
            dma: DmaPages::new(),
            acpi_pm: config.acpi_pm.then(AcpiPm::new),
            bus,
            console: ConsoleBuffer::new(config.console_capacity),
        }
    }

    fn builtin(&self, port: u16) -> Option<Builtin> {
        if Pic::claims(port) {
            Some(Builtin::Pic)
        } else if Pit::claims(port) {
            Some(Builtin::Pit)
        } else if Rtc::claims(port) {
            Some(Builtin::Rtc)
        } else if DmaPages::claims(port) {
            Some(Builtin::Dma)
        } else if self.uart.claims(port) {
            Some(Builtin::Uart)
        } else if self.acpi_pm.is_some() && AcpiPm::claims(port) {
            Some(Builtin::AcpiPm)
        } else {
            None
        }
    }

    fn touches_builtin(&self, port: u16, size: AccessSize) -> bool {
        (0..u16::from(size.bytes())).any(|i| self.builtin(port.wrapping_add(i)).is_some())
    }

    fn read_builtin(&mut self, b: Builtin, port: u16, now: u64) -> u8 {
        let mut ctx = IoContext::new(now, &mut self.lines, &mut self.console);
        match b {
            Builtin::Pit => self.pit.read_port(port, &mut ctx),
            Builtin::Uart => self.uart.read_port(port, &mut ctx),
            Builtin::Rtc => self.rtc.read_port(port, now),
            Builtin::Dma => self.dma.read_port(port),
            Builtin::Pic => self.lines.pic.read_port(port),
            Builtin::AcpiPm => self.acpi_pm.as_ref().map_or(0xFF, |pm| pm.read_port(port)),
        }
    }

    fn write_builtin(&mut self, b: Builtin, port: u16, value: u8, now: u64) {
        let mut ctx = IoContext::new(now, &mut self.lines, &mut self.console);
        match b {
            Builtin::Pit => self.pit.write_port(port, value, &mut ctx),
            Builtin::Uart => self.uart.write_port(port, value, &mut ctx),
            Builtin::Rtc => self.rtc.write_port(port, value, now),
            Builtin::Dma => self.dma.write_port(port, value),
            Builtin::Pic => self.lines.pic.write_port(port, value),
            Builtin::AcpiPm => {
                if let Some(pm) = self.acpi_pm.as_mut() {
                    pm.write_port(port, value);
                    ctx.set_irq(acpi_pm::SCI_IRQ, pm.sci_level());
                }
            }
        }
    }

    /// `in` of `size` from `port` at TSC time `now_tsc`: returns the value for the low
    /// `size` bytes of EAX (the upper bytes are zero).
    pub fn io_read(&mut self, port: u16, size: AccessSize, now_tsc: u64) -> u32 {
        self.tick_if_observed(port, size, now_tsc);
        if !self.touches_builtin(port, size) {
            let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
            return self.bus.read(port, size, &mut ctx);
        }
        // The built-in devices are 8-bit: split the access as the ISA bus does.
        let mut value = 0u32;
        for i in 0..size.bytes() {
            let p = port.wrapping_add(u16::from(i));
            let byte = match self.builtin(p) {
                Some(b) => self.read_builtin(b, p, now_tsc),
                None => {
                    let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
                    self.bus.read(p, AccessSize::Byte, &mut ctx) as u8
                }
            };
            value |= u32::from(byte) << (8 * u32::from(i));
        }
        value
    }

    /// `out` of the low `size` bytes of `value` to `port` at TSC time `now_tsc`.
    pub fn io_write(&mut self, port: u16, size: AccessSize, value: u32, now_tsc: u64) {
        self.tick_if_observed(port, size, now_tsc);
        if !self.touches_builtin(port, size) {
            let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
            self.bus.write(port, size, value, &mut ctx);
            return;
        }
        for i in 0..size.bytes() {
            let p = port.wrapping_add(u16::from(i));
            let byte = (value >> (8 * u32::from(i))) as u8;
            match self.builtin(p) {
                Some(b) => self.write_builtin(b, p, byte, now_tsc),
                None => {
                    let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
                    self.bus
                        .write(p, AccessSize::Byte, u32::from(byte), &mut ctx);
                }
            }
        }
    }

    /// A byte `out` to COM1's data port (the console byte), handled by the UART model exactly
    /// as [`LegacyPlatform::io_write`] would, but with the transmitted byte going straight to
    /// `console` (the VMM's per-VM console) instead of this platform's buffer: no copy, no
    /// drain, and no clock read (the UART model is untimed: a byte leaves at once). Returns
    /// `false` and does nothing for any other access.
    pub fn uart_data_write(
        &mut self,
        port: u16,
        size: AccessSize,
        value: u32,
        console: &mut dyn ConsoleSink,
    ) -> bool {
        if size != AccessSize::Byte || port != self.uart.base() {
            return false;
        }
        let mut ctx = IoContext::new(0, &mut self.lines, console);
        self.uart.write_port(port, value as u8, &mut ctx);
        true
    }

    /// Brings the PIT up to `now_tsc` before an access that can observe it: the PIT itself, its
    /// port B, and the PIC (whose IRR and ISR the PIT's IRQ0 changes). The VMM ticks before every
    /// VM entry anyway, so other ports (the UART on every console byte) skip the arithmetic.
    fn tick_if_observed(&mut self, port: u16, size: AccessSize, now_tsc: u64) {
        let observes = (0..u16::from(size.bytes())).any(|i| {
            let p = port.wrapping_add(i);
            Pit::claims(p) || Pic::claims(p)
        });
        if observes {
            self.tick(now_tsc);
        }
    }

    /// Brings time-driven interrupt sources (PIT counter 0 → IRQ0) up to `now_tsc`.
    pub fn tick(&mut self, now_tsc: u64) {
        let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
        self.pit.advance(&mut ctx);
    }

    /// When the next timer interrupt is due (TSC), for arming the preemption timer.
    pub fn next_deadline_tsc(&self) -> Option<u64> {
        self.pit.next_deadline_tsc()
    }

    /// When the next timer interrupt that can reach the CPU is due: the PIT's deadline while
    /// IRQ0 is unmasked. A masked line never interrupts, whatever its counter does, so it is
    /// no reason to interrupt this VM or any other.
    pub fn next_wake_tsc(&self) -> Option<u64> {
        self.lines
            .line_unmasked(PIT_IRQ)
            .then(|| self.pit.next_deadline_tsc())
            .flatten()
    }

    /// Whether a legacy device can still interrupt a halted vCPU: a request is pending at the
    /// PIC or queued at the IOAPIC, the PIT runs with IRQ0 unmasked, or the UART's IRQ4 is
    /// unmasked (received bytes need no guest action to arrive), at either controller. The RTC
    /// model raises no interrupts.
    pub fn can_interrupt(&self) -> bool {
        self.pending_vector().is_some()
            || self.lines.has_messages()
            || self.next_wake_tsc().is_some()
            || self.lines.line_unmasked(UART_IRQ)
    }

    /// Whether ISA line `irq` can reach a CPU through the PIC pair or the IOAPIC.
    pub fn irq_unmasked(&self, irq: u8) -> bool {
        self.lines.line_unmasked(irq)
    }

    /// A 32-bit read of the IOAPIC window at `offset` (82093AA §3.1).
    pub fn ioapic_read(&self, offset: u64) -> u32 {
        self.lines.ioapic.mmio_read(offset)
    }

    /// A 32-bit write of the IOAPIC window at `offset`; a message it causes is queued.
    pub fn ioapic_write(&mut self, offset: u64, value: u32) {
        self.lines.ioapic_write(offset, value);
    }

    /// An EOI for `vector` broadcast to the IOAPIC (SDM Vol. 3A §11.8.5).
    pub fn ioapic_eoi(&mut self, vector: u8) {
        self.lines.ioapic_eoi(vector);
    }

    /// The oldest IOAPIC message for the hypervisor to route to the vCPUs.
    pub fn take_ioapic_message(&mut self) -> Option<super::ioapic::IoApicMessage> {
        self.lines.take_message()
    }

    /// The interrupt lines and both controllers (counters).
    pub fn irq_lines(&self) -> &IrqLines {
        &self.lines
    }

    /// Vector of the interrupt the PIC wants to deliver, if any (no side effects).
    pub fn pending_vector(&self) -> Option<u8> {
        self.lines.pic.pending_vector()
    }

    /// INTA: takes the pending interrupt into service and returns its vector to inject.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.lines.pic.acknowledge()
    }

    /// Drives ISA interrupt line `irq` from outside the port devices (e.g. a virtio device).
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        self.lines.set_irq(irq, level);
    }

    /// Feeds console input to COM1; returns how many bytes fit.
    pub fn uart_receive(&mut self, bytes: &[u8], now_tsc: u64) -> usize {
        let mut ctx = IoContext::new(now_tsc, &mut self.lines, &mut self.console);
        self.uart.receive(bytes, &mut ctx)
    }

    /// Registers a run-time device on `first..=last`.
    pub fn register(
        &mut self,
        first: u16,
        last: u16,
        device: Box<dyn PortDevice>,
    ) -> Result<DeviceId, IoError> {
        self.bus.register(first, last, device)
    }

    /// Whether an access to `port` changes nothing an interrupt line, a timer or another
    /// device depends on, so the vCPU may go back into the guest without the pre-entry work
    /// (the kernel's exit fast path, issue 14): a port no device claims (reads float high,
    /// writes are dropped; only the unclaimed-port counters move), the DMA page registers
    /// (0x80-0x8F: bytes stored and read back, the POST and I/O-delay port among them) and
    /// COM1's scratch register (PC16550D datasheet, "Scratchpad Register": no effect on the
    /// UART's operation).
    pub fn port_is_passive(&self, port: u16, size: AccessSize) -> bool {
        (0..u16::from(size.bytes())).all(|i| {
            let p = port.wrapping_add(i);
            match self.builtin(p) {
                Some(Builtin::Uart) => p.wrapping_sub(self.uart.base()) == UART_SCRATCH,
                Some(Builtin::Dma) => true,
                Some(Builtin::Pic | Builtin::Pit | Builtin::Rtc | Builtin::AcpiPm) => false,
                None => !self.bus.any_claimed(p, AccessSize::Byte),
            }
        })
    }

    /// Counters of accesses to unclaimed ports.
    pub fn unclaimed(&self) -> &UnclaimedStats {
        self.bus.unclaimed()
    }

    /// Name of the device that handles `port`, if any.
    pub fn owner_name(&self, port: u16) -> Option<&'static str> {
        self.bus.owner_name(port)
    }

    /// The console output buffer (drain it when [`ConsoleBuffer::line_ready`]).
    pub fn console(&mut self) -> &mut ConsoleBuffer {
        &mut self.console
    }

    /// The PIC.
    pub fn pic(&self) -> &Pic {
        &self.lines.pic
    }

    /// The PIC, mutably.
    pub fn pic_mut(&mut self) -> &mut Pic {
        &mut self.lines.pic
    }

    /// The PIT.
    pub fn pit(&self) -> &Pit {
        &self.pit
    }

    /// The RTC, mutably (to preset CMOS bytes).
    pub fn rtc_mut(&mut self) -> &mut Rtc {
        &mut self.rtc
    }

    /// COM1.
    pub fn uart(&self) -> &Uart {
        &self.uart
    }

    /// The DMA page registers / port 0x80 sink.
    pub fn dma_pages(&self) -> &DmaPages {
        &self.dma
    }

    /// The ACPI PM device, when the platform has one.
    pub fn acpi_pm(&self) -> Option<&AcpiPm> {
        self.acpi_pm.as_ref()
    }

    /// The guest's pending power-off or reset request (ACPI S5 or the reset register), taken.
    pub fn take_power_request(&mut self) -> Option<PowerRequest> {
        self.acpi_pm.as_mut().and_then(AcpiPm::take_request)
    }

    /// Presses the ACPI power button (PWRBTN_STS) and drives the SCI (IRQ 9) to match; does
    /// nothing on a platform without the ACPI PM device.
    pub fn press_power_button(&mut self) {
        if let Some(pm) = self.acpi_pm.as_mut() {
            pm.press_power_button();
            self.lines.set_irq(acpi_pm::SCI_IRQ, pm.sci_level());
        }
    }

    /// The run-time device bus.
    pub fn bus_mut(&mut self) -> &mut IoBus {
        &mut self.bus
    }

    /// Appends the guest-visible state of the built-in devices, in order: the interrupt lines
    /// ([`IrqLines::save_state`]: PIC pair, IOAPIC, line levels, queued IOAPIC messages),
    /// [`Pit::save_state`], [`Rtc::save_state`], [`Uart::save_state`],
    /// [`DmaPages::save_state`], then a presence byte for the ACPI PM device and, when
    /// present, [`AcpiPm::save_state`]. Not included: devices registered on the [`IoBus`]
    /// at run time (see [`LegacyPlatform::registered_ports`]), the bus's unclaimed-port
    /// counters (host statistics) and the console buffer (host output).
    pub fn save_state(&self, e: &mut Enc) {
        self.lines.save_state(e);
        self.pit.save_state(e);
        self.rtc.save_state(e);
        self.uart.save_state(e);
        self.dma.save_state(e);
        state::put_option(e, self.acpi_pm.as_ref(), |e, pm| pm.save_state(e));
    }

    fn decode_state(&self, d: &mut Dec<'_>, shift: u64) -> Result<DecodedState, &'static str> {
        let mut lines = self.lines.clone();
        lines.load_state(d, shift)?;
        let mut pit = self.pit.clone();
        pit.load_state(d, shift)?;
        let mut rtc = self.rtc.clone();
        rtc.load_state(d, shift)?;
        let mut uart = self.uart.clone();
        uart.load_state(d, shift)?;
        let mut dma = self.dma.clone();
        dma.load_state(d, shift)?;
        let present = state::flag(d, "ACPI PM presence neither 0 nor 1")?;
        let acpi_pm = match (present, &self.acpi_pm) {
            (true, Some(pm)) => {
                let mut pm = pm.clone();
                pm.load_state(d, shift)?;
                Some(pm)
            }
            (false, None) => None,
            (true, None) => return Err("an ACPI PM device this platform is configured without"),
            (false, Some(_)) => return Err("no ACPI PM device, but this platform has one"),
        };
        Ok(DecodedState {
            lines,
            pit,
            rtc,
            uart,
            dma,
            acpi_pm,
        })
    }

    fn apply_state(&mut self, s: DecodedState) {
        self.lines = s.lines;
        self.pit = s.pit;
        self.rtc = s.rtc;
        self.uart = s.uart;
        self.dma = s.dma;
        self.acpi_pm = s.acpi_pm;
    }

    /// Reads what [`LegacyPlatform::save_state`] wrote into this platform, freshly built by
    /// [`LegacyPlatform::new`] with the same configuration (the ACPI PM device must be
    /// present in both or neither). `shift` is added to every stored host-TSC value (the PIT
    /// counters' start times, the RTC's clock base). The caller checks [`Dec::done`] (or
    /// uses [`LegacyPlatform::load_section`]). On error nothing changes and the message names
    /// the first bad field. Afterwards the kernel re-arms its timer from
    /// [`LegacyPlatform::next_deadline_tsc`] and refreshes the EOI-exit bitmap
    /// (`IrqLines::level_generation` moved).
    pub fn load_state(&mut self, d: &mut Dec<'_>, shift: u64) -> Result<(), &'static str> {
        let s = self.decode_state(d, shift)?;
        self.apply_state(s);
        Ok(())
    }

    /// [`LegacyPlatform::load_state`] of a whole section: `bytes` must hold the state and
    /// nothing after it ("bytes after the last field" otherwise, nothing changed).
    pub fn load_section(&mut self, bytes: &[u8], shift: u64) -> Result<(), &'static str> {
        let mut d = Dec::new(bytes);
        let s = self.decode_state(&mut d, shift)?;
        if !d.done() {
            return Err(state::TRAILING);
        }
        self.apply_state(s);
        Ok(())
    }

    /// Ports claimed on the [`IoBus`] beyond the built-in devices' own: those of devices
    /// registered at run time, whose state [`LegacyPlatform::save_state`] does not hold. A
    /// snapshot of a platform where this is not 0 would be incomplete.
    pub fn registered_ports(&self) -> usize {
        // The bus's few ranges, not every port: a snapshot checks this with the VM paused.
        self.bus
            .claimed_ranges()
            .flat_map(|(first, last)| first..=last)
            .filter(|&p| self.builtin(p).is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::pit::PIT_HZ;
    use alloc::vec::Vec;

    const HZ: u64 = 3_000_000_000;
    const B: AccessSize = AccessSize::Byte;

    fn platform() -> LegacyPlatform {
        let mut cfg = PlatformConfig::new(HZ);
        cfg.wall_clock_secs = 1_798_761_599;
        cfg.ram_bytes = 64 << 20;
        LegacyPlatform::new(cfg)
    }

    #[test]
    fn passive_ports_are_the_unclaimed_ones_and_the_uart_scratch_register() {
        let p = platform();
        // Nobody claims 0x2F0 (COM2's UART is not modelled); 0x80-0x8F only store bytes.
        assert!(p.port_is_passive(0x2f0, AccessSize::Dword));
        assert!(p.port_is_passive(0x80, AccessSize::Dword));
        assert!(p.port_is_passive(0x3ff, B), "COM1 scratch");
        // Every other built-in register can move an interrupt line or a timer.
        for port in [
            0x20, 0x21, 0xa0, 0x40, 0x43, 0x61, 0x70, 0x71, 0x3f8, 0x3f9, 0x3fd, 0x4d0,
        ] {
            assert!(!p.port_is_passive(port, B), "port {port:#x}");
        }
        // A wide access is passive only if every byte is.
        assert!(!p.port_is_passive(0x3fe, AccessSize::Word));
        assert!(!p.port_is_passive(0x3fd, AccessSize::Dword));
    }

    fn out(p: &mut LegacyPlatform, port: u16, v: u8, now: u64) {
        p.io_write(port, B, u32::from(v), now);
    }

    fn linux_boot_devices(p: &mut LegacyPlatform) {
        // init_8259A.
        for (port, v) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfb),
            (0xa1, 0xff),
        ] {
            out(p, port, v, 0);
            out(p, 0x80, 0, 0); // outb_p's I/O delay
        }
        // PIT periodic at HZ=100, then unmask IRQ0.
        out(p, 0x43, 0x34, 0);
        out(p, 0x40, 0x9c, 0);
        out(p, 0x40, 0x2e, 0);
        out(p, 0x21, 0xfa, 0);
    }

    #[test]
    fn timer_interrupt_path() {
        let mut p = platform();
        linux_boot_devices(&mut p);
        assert_eq!(p.pending_vector(), None);
        let deadline = p.next_deadline_tsc().unwrap();
        assert_eq!(deadline, (11932 * HZ).div_ceil(PIT_HZ));
        p.tick(deadline);
        assert_eq!(p.pending_vector(), Some(0x30));
        assert_eq!(p.acknowledge(), Some(0x30));
        out(&mut p, 0x20, 0x60, deadline);
        assert!(p.next_deadline_tsc().unwrap() > deadline);
        // Port 0x80 traffic is absorbed, not unclaimed.
        assert_eq!(p.unclaimed().total(), 0);
        assert_eq!(p.dma_pages().io_delay_writes(), 12);
    }

    #[test]
    fn console_bytes_go_straight_to_the_vmm_console() {
        let mut p = platform();
        linux_boot_devices(&mut p);
        let mut sink = crate::io::tests::FakeConsole(Vec::new());
        for &b in b"hi\n" {
            assert!(p.uart_data_write(0x3f8, B, u32::from(b), &mut sink));
        }
        assert_eq!(sink.0, b"hi\n");
        assert!(
            p.console().is_empty(),
            "nothing went through the platform's buffer"
        );
        // Not the data port, or not a byte: the caller's io_write handles it.
        assert!(!p.uart_data_write(0x3f9, B, 0, &mut sink));
        assert!(!p.uart_data_write(0x3f8, AccessSize::Word, 0x41, &mut sink));
        // With DLAB set the data port is the divisor latch: no console byte.
        out(&mut p, 0x3fb, 0x83, 0);
        assert!(p.uart_data_write(0x3f8, B, 3, &mut sink));
        assert_eq!(sink.0, b"hi\n");
        assert_eq!(p.uart().divisor(), 3);
    }

    #[test]
    fn a_masked_timer_wakes_nobody() {
        let mut p = platform();
        linux_boot_devices(&mut p);
        let deadline = p.next_deadline_tsc().unwrap();
        assert_eq!(p.next_wake_tsc(), Some(deadline));
        assert!(p.can_interrupt());
        // Mask everything (OCW1 0xFF on both chips): the PIT still counts, but its deadline
        // is no reason to wake this vCPU, and nothing else can interrupt it.
        out(&mut p, 0x21, 0xff, 0);
        out(&mut p, 0xa1, 0xff, 0);
        assert_eq!(p.next_deadline_tsc(), Some(deadline));
        assert_eq!(p.next_wake_tsc(), None);
        assert!(!p.can_interrupt());
        // Only the UART's line unmasked: input could still arrive.
        out(&mut p, 0x21, 0xef, 0);
        assert!(p.can_interrupt() && p.next_wake_tsc().is_none());
        // A slave line needs the cascade line IRQ2 unmasked at the master.
        out(&mut p, 0xa1, 0x00, 0);
        out(&mut p, 0x21, 0xff, 0);
        assert!(!p.irq_unmasked(8));
        out(&mut p, 0x21, 0xfb, 0);
        assert!(p.irq_unmasked(8) && p.irq_unmasked(15) && !p.irq_unmasked(0));
        assert!(!p.irq_unmasked(16));
    }

    #[test]
    fn console_and_uart_irq() {
        let mut p = platform();
        linux_boot_devices(&mut p);
        for &b in b"hello\n" {
            out(&mut p, 0x3f8, b, 0);
        }
        assert!(p.console().line_ready());
        let mut got = Vec::new();
        p.console().drain(&mut |b| got.extend_from_slice(b));
        assert_eq!(got, b"hello\n");
        // Unmask IRQ4, enable THRE interrupts with OUT2: vector 0x34.
        out(&mut p, 0x21, 0xea, 0);
        out(&mut p, 0x3fc, 0x0b, 0);
        out(&mut p, 0x3f9, 0x02, 0);
        assert_eq!(p.pending_vector(), Some(0x34));
        assert_eq!(p.acknowledge(), Some(0x34));
        assert_eq!(p.io_read(0x3fa, B, 0), 0x02);
        out(&mut p, 0x20, 0x64, 0);
        assert_eq!(p.pending_vector(), None);
        // Input raises received-data interrupts.
        out(&mut p, 0x3f9, 0x01, 0);
        assert_eq!(p.uart_receive(b"x", 0), 1);
        assert_eq!(p.acknowledge(), Some(0x34));
        assert_eq!(p.io_read(0x3f8, B, 0), u32::from(b'x'));
    }

    #[test]
    fn unclaimed_ports_and_wide_accesses() {
        let mut p = platform();
        assert_eq!(p.io_read(0x87, B, 0), 0xff, "DMA page register reset value");
        assert_eq!(p.io_read(0x92, B, 0), 0xff);
        assert_eq!(p.io_read(0xcfc, AccessSize::Dword, 0), 0xffff_ffff);
        p.io_write(0x92, B, 1, 0);
        assert_eq!(p.unclaimed().total(), 3);
        assert_eq!(p.unclaimed().port(0x92).unwrap().reads, 1);
        assert_eq!(p.unclaimed().port(0x87), None);
        // A word read of 0x70 reads index (0xff) and data; a word write sets index and data.
        p.io_write(0x70, AccessSize::Word, 0x1015, 0);
        assert_eq!(p.io_read(0x71, B, 0), 0x10);
        // RTC through the platform: UIP clear, BCD year.
        out(&mut p, 0x70, 0x0a, 0);
        assert_eq!(p.io_read(0x71, B, 0) & 0x80, 0);
        out(&mut p, 0x70, 0x09, 0);
        assert_eq!(p.io_read(0x71, B, 0), 0x26);
        out(&mut p, 0x70, 0x35, 0);
        assert_eq!(
            p.io_read(0x71, B, 0),
            0x03,
            "48 MiB above 16 MiB = 0x300 blocks"
        );
        // ELCR and PIC through the platform.
        p.io_write(0x4d0, AccessSize::Word, 0x0e20, 0);
        assert_eq!(p.io_read(0x4d0, AccessSize::Word, 0), 0x0e20);
        // A dword straddling the PIT control port and unclaimed 0x44-0x46.
        assert_eq!(p.io_read(0x43, AccessSize::Dword, 0), 0xffff_ffff);
        assert_eq!(p.unclaimed().port(0x44).unwrap().reads, 1);
        assert_eq!(p.owner_name(0x3fd), Some("uart"));
    }

    #[test]
    fn registration_respects_builtins() {
        struct Dummy;
        impl PortDevice for Dummy {
            fn name(&self) -> &'static str {
                "dummy"
            }
            fn read(&mut self, _: u16, _: AccessSize, ctx: &mut IoContext<'_>) -> u32 {
                ctx.raise_irq(5);
                0x1234_5678
            }
            fn write(&mut self, _: u16, _: AccessSize, _: u32, ctx: &mut IoContext<'_>) {
                ctx.lower_irq(5);
            }
        }
        let mut p = platform();
        assert_eq!(
            p.register(0x3f0, 0x3f8, Box::new(Dummy)).unwrap_err(),
            IoError::Overlap {
                first: 0x3f0,
                last: 0x3f8,
                existing: "uart"
            }
        );
        assert!(p.register(0x61, 0x61, Box::new(Dummy)).is_err());
        assert!(p.register(0x80, 0x80, Box::new(Dummy)).is_err());
        p.register(0x500, 0x503, Box::new(Dummy)).unwrap();
        linux_boot_devices(&mut p);
        out(&mut p, 0x21, 0xda, 0);
        assert_eq!(p.io_read(0x500, AccessSize::Word, 0), 0x5678);
        assert_eq!(p.acknowledge(), Some(0x35));
    }

    #[test]
    fn acpi_pm_only_when_configured() {
        let mut p = platform();
        assert_eq!(p.io_read(0x604, AccessSize::Word, 0), 0xffff);
        p.io_write(0xcf9, B, 0x06, 0);
        assert_eq!(p.take_power_request(), None);
        assert_eq!(p.unclaimed().total(), 2);
        assert!(p.acpi_pm().is_none());

        let mut cfg = PlatformConfig::new(HZ);
        cfg.acpi_pm = true;
        let mut p = LegacyPlatform::new(cfg);
        assert_eq!(p.owner_name(0x600), Some("acpi-pm"));
        assert_eq!(p.owner_name(0xcf9), Some("acpi-reset"));
        assert_eq!(p.io_read(0x604, AccessSize::Word, 0), 0x0001, "SCI_EN");
        // A word write of SLP_TYP = S5 | SLP_EN, split into bytes by the platform.
        p.io_write(0x604, AccessSize::Word, 0x3400, 0);
        assert_eq!(p.take_power_request(), Some(PowerRequest::Off));
        p.io_write(0xcf9, B, 0x06, 0);
        assert_eq!(p.take_power_request(), Some(PowerRequest::Reset));
        assert_eq!(p.take_power_request(), None);
        // The power button raises the SCI on IRQ 9 once PWRBTN_EN is set: the slave PIC's
        // IR1 (vector base 0x38 after Linux's init).
        linux_boot_devices(&mut p);
        out(&mut p, 0xa1, 0xfd, 0);
        p.press_power_button();
        assert_eq!(p.pending_vector(), None, "PWRBTN_EN clear");
        p.io_write(0x602, AccessSize::Word, 0x0100, 0);
        assert_eq!(p.acknowledge(), Some(0x39));
        assert_eq!(p.unclaimed().total(), 0);
    }

    #[test]
    fn a_device_line_reaches_the_ioapic() {
        let mut p = platform();
        // IOAPIC pin 5: vector 0x45, fixed, physical APIC ID 0, edge, unmasked.
        p.ioapic_write(super::super::ioapic::IOREGSEL, 0x10 + 10);
        p.ioapic_write(super::super::ioapic::IOWIN, 0x45);
        // A virtio device's completion pulse on ISA line 5 (kernel: Platform::raise).
        p.set_irq(5, true);
        p.set_irq(5, false);
        let m = p.take_ioapic_message().expect("a message for pin 5");
        assert_eq!((m.pin, m.vector, m.dest), (5, 0x45, 0));
        assert_eq!(p.take_ioapic_message(), None);
        // The PIT's line 0 reaches pin 2 (the MADT's override), masked here: nothing.
        p.set_irq(0, true);
        assert_eq!(p.take_ioapic_message(), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut p = platform();
        let mut x: u32 = 0x1234_5678;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let ports = [
                0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71,
            ];
            let port = if x & 1 == 0 {
                ports[(x as usize >> 8) % ports.len()]
            } else {
                0x3f8 + (x >> 9) as u16 % 8
            };
            let size = [B, AccessSize::Word, AccessSize::Dword][(x >> 20) as usize % 3];
            let now = i * 1000;
            if x & 2 == 0 {
                p.io_write(port, size, x >> 3, now);
            } else {
                let _ = p.io_read(port, size, now);
            }
            let _ = p.acknowledge();
            let _ = p.next_deadline_tsc();
        }
        let _ = p.io_read(0xffff, AccessSize::Dword, u64::MAX);
    }
}
