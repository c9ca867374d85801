//! The port devices' snapshot state: the 16550 UART, the ACPI PM1 blocks, the DMA page registers.

use super::*;

// ---------------------------------------------------------------------------------------
// 16550

struct UartRig {
    uart: Uart,
    irq: Lines,
    con: FakeConsole,
}

impl UartRig {
    fn new(uart: Uart) -> Self {
        Self {
            uart,
            irq: Lines::default(),
            con: FakeConsole::default(),
        }
    }
    fn out(&mut self, reg: u16, v: u8) {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.write_port(COM1_BASE + reg, v, &mut ctx);
    }
    fn inb(&mut self, reg: u16) -> u8 {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.read_port(COM1_BASE + reg, &mut ctx)
    }
    fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut ctx = IoContext::new(0, &mut self.irq, &mut self.con);
        self.uart.receive(bytes, &mut ctx)
    }
}

/// Divisor 3, 8N1 with a stick bit, FIFO on, scratch byte, OUT2, received bytes waiting
/// with the data and THRE interrupts enabled (the line high).
fn receiving_uart() -> Uart {
    let mut r = UartRig::new(Uart::com1());
    r.out(3, 0x80);
    r.out(0, 3);
    r.out(1, 0);
    r.out(3, 0x23);
    r.out(2, 0x07);
    r.out(7, 0x5a);
    r.out(4, 0x0b);
    r.out(1, 0x03);
    assert_eq!(r.receive(b"hello"), 5);
    assert!(r.uart.irq_level());
    r.uart
}

/// Loopback with an overrun (the receiver full), modem-status deltas and the line-status
/// and modem-status interrupts enabled.
fn overrun_uart() -> Uart {
    let mut r = UartRig::new(Uart::com1());
    r.out(1, 0x0c);
    r.out(4, 0x10 | 0x02);
    for i in 0..=RX_CAPACITY {
        r.out(0, i as u8);
    }
    r.uart
}

/// Reads and writes of every register, with the console output and IRQ changes.
fn uart_script(uart: Uart) -> (Vec<u8>, Vec<(u8, bool)>, Vec<u8>) {
    let mut r = UartRig::new(uart);
    let mut out = Vec::new();
    out.push(u8::from(r.uart.irq_level()));
    out.push(r.uart.rx_space() as u8);
    for reg in [2, 5, 6, 0, 2, 0, 1, 3, 4, 7, 2, 5, 6] {
        out.push(r.inb(reg));
    }
    r.out(0, b'!');
    r.out(4, 0x08);
    r.receive(b"xy");
    for _ in 0..8 {
        for reg in [2, 5, 0] {
            out.push(r.inb(reg));
        }
    }
    r.out(3, 0x80);
    out.push(r.inb(0));
    out.push(r.inb(1));
    (out, r.irq.0, r.con.0)
}

#[test]
fn uart_round_trip_and_behaviour() {
    for orig in [receiving_uart(), overrun_uart(), Uart::com1()] {
        let restored = restore(&orig, Uart::com1, 0);
        assert_eq!(restored.irq_level(), orig.irq_level());
        assert_eq!(uart_script(restored), uart_script(orig));
    }
}

#[test]
fn uart_truncations_refused() {
    assert_truncations_refused(&receiving_uart(), Uart::com1);
}

#[test]
fn uart_out_of_range_refused() {
    let b = bytes_of(&receiving_uart());
    // IER, LCR, MCR, SCR, DLL, DLM, FIFO, THRE pending, LSR errors, MSR deltas, FIFO length.
    let cases: [(usize, &[u8], &str); 7] = [
        (0, &[0x10], "UART IER with bits 7:4 set"),
        (2, &[0x20], "UART MCR with bits 7:5 set"),
        (6, &[2], "UART FIFO enable neither 0 nor 1"),
        (7, &[0xff], "UART THRE-pending flag neither 0 nor 1"),
        (8, &[0x01], "UART LSR errors other than overrun"),
        (9, &[0x10], "UART MSR deltas beyond bits 3:0"),
        (
            10,
            &(RX_CAPACITY as u32 + 1).to_le_bytes(),
            "UART receive FIFO longer than its capacity",
        ),
    ];
    for (at, v, message) in cases {
        assert_refused(Uart::com1, &patched(&b, at, v), message);
    }
    // A length within the capacity but beyond the input ends early.
    assert_refused(
        Uart::com1,
        &patched(&b, 10, &(RX_CAPACITY as u32).to_le_bytes()),
        ENDS_EARLY,
    );
}

// ---------------------------------------------------------------------------------------
// ACPI PM1 blocks

/// WAK_STS from an unsupported sleep, the power button pressed and enabled, S5 in SLP_TYP,
/// SYS_RST stored and a power-off request not yet taken.
fn busy_acpi_pm() -> AcpiPm {
    let mut pm = AcpiPm::new();
    pm.write_port(0x605, 0x20 | (3 << 2));
    pm.press_power_button();
    pm.write_port(0x602, 0x20);
    pm.write_port(0x603, 0x01);
    pm.write_port(acpi_pm::RESET_PORT, 0x02);
    pm.write_port(0x605, 0x20 | (acpi_pm::SLP_TYP_S5 << 2));
    assert_eq!(pm.request(), Some(PowerRequest::Off));
    pm
}

fn acpi_pm_script(mut pm: AcpiPm) -> Vec<u32> {
    let mut out = Vec::new();
    let note = |pm: &AcpiPm, out: &mut Vec<u32>| {
        for port in (0x600..0x606).chain([acpi_pm::RESET_PORT]) {
            out.push(u32::from(pm.read_port(port)));
        }
        out.push(u32::from(pm.sci_level()));
    };
    note(&pm, &mut out);
    out.push(match pm.take_request() {
        None => 0,
        Some(PowerRequest::Off) => 1,
        Some(PowerRequest::Reset) => 2,
    });
    pm.write_port(0x601, 0x81);
    note(&pm, &mut out);
    pm.write_port(acpi_pm::RESET_PORT, acpi_pm::RESET_VALUE);
    out.push(u32::from(pm.take_request() == Some(PowerRequest::Reset)));
    note(&pm, &mut out);
    out
}

#[test]
fn acpi_pm_round_trip_and_behaviour() {
    let orig = busy_acpi_pm();
    let restored = restore(&orig, AcpiPm::new, 0);
    assert_eq!(acpi_pm_script(restored), acpi_pm_script(orig));
}

#[test]
fn acpi_pm_truncations_refused() {
    assert_truncations_refused(&busy_acpi_pm(), AcpiPm::new);
}

#[test]
fn acpi_pm_out_of_range_refused() {
    let b = bytes_of(&busy_acpi_pm());
    // PM1_STS, PM1_EN, PM1_CNT (u16 each), reset register, request.
    let cases: [(usize, &[u8], &str); 5] = [
        (0, &[0x01, 0x00], "ACPI PM1_STS with unmodelled bits"),
        (2, &[0x01, 0x00], "ACPI PM1_EN with unmodelled bits"),
        (4, &[0x01, 0x00], "ACPI PM1_CNT with bits that do not stick"),
        (
            6,
            &[0x04],
            "ACPI reset register with bits that do not stick",
        ),
        (7, &[3], "ACPI power request neither none, off nor reset"),
    ];
    for (at, v, message) in cases {
        assert_refused(AcpiPm::new, &patched(&b, at, v), message);
    }
}

// ---------------------------------------------------------------------------------------
// DMA page registers (every byte value is one a guest can write: nothing is out of range)

fn written_dma_pages() -> DmaPages {
    let mut d = DmaPages::new();
    for (port, v) in [(0x80, 0x12), (0x87, 0x05), (0x8f, 0x00), (0x81, 0xa5)] {
        d.write_port(port, v);
    }
    d
}

#[test]
fn dma_pages_round_trip_and_behaviour() {
    let orig = written_dma_pages();
    let restored = restore(&orig, DmaPages::new, 0);
    for port in 0x7f..0x91 {
        assert_eq!(restored.read_port(port), orig.read_port(port));
    }
    assert_eq!(restored.post_code(), 0x12);
}

#[test]
fn dma_pages_truncations_refused() {
    assert_truncations_refused(&written_dma_pages(), DmaPages::new);
}
