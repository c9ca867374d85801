//! QEMU command lines: TCG + OVMF (UEFI boot path, no VMX) and KVM with nested VMX.

use std::path::{Path, PathBuf};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// isa-debug-exit: the kernel writes its exit status V here; QEMU exits with (V << 1) | 1.
pub const DEBUG_EXIT_IOBASE: &str = "0xf4";

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: no VMX; exercises the UEFI boot path and the "no VT-x" diagnosis.
    Tcg,
    /// Hardware virtualization with the host CPU passed through (needs nested VMX).
    Kvm,
}

/// Where QEMU's COM1 goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuSerial {
    /// Output only, into this file.
    File(PathBuf),
    /// Both directions through this terminal device: the slave side of a pseudo-terminal
    /// whose master the runner holds (crate::serial_input), as Bochs's `mode=term`.
    Tty(PathBuf),
}

/// One QEMU run.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub accel: Accel,
    /// `-cpu` for TCG (KVM always uses `host`).
    pub cpu: String,
    pub megs: u32,
    /// `-smp`: the emulated CPU count.
    pub cpus: u32,
    pub disk: PathBuf,
    /// More drives, used in place: IDE disks at indices 1-3 (the boot disk is index 0).
    pub drives: Vec<PathBuf>,
    /// NVMe drives, used in place: one `-device nvme` controller each.
    pub nvme: Vec<PathBuf>,
    /// `-machine q35` (PCIe with an ACPI MCFG) instead of the default pc machine.
    pub q35: bool,
    pub vars: PathBuf,
    pub serial: QemuSerial,
    /// An e1000 (82540EM) NIC with this MAC on QEMU's user-mode network; without it the
    /// machine has QEMU's default NIC (also an e1000, with QEMU's default MAC).
    pub e1000: Option<[u8; 6]>,
}

impl QemuConfig {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        match self.accel {
            Accel::Tcg => {
                push("-accel");
                push("tcg");
                push("-cpu");
                push(&self.cpu);
            }
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
        }
        if self.q35 {
            push("-machine");
            push("q35");
        }
        for s in [
            "-smp",
            &self.cpus.max(1).to_string(),
            "-m",
            &self.megs.to_string(),
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ] {
            push(s);
        }
        push("-drive");
        push(&format!(
            "if=pflash,format=raw,readonly=on,file={OVMF_CODE}"
        ));
        push("-drive");
        push(&format!(
            "if=pflash,format=raw,file={}",
            self.vars.display()
        ));
        push("-drive");
        push(&format!("format=raw,file={}", self.disk.display()));
        for (i, d) in self.drives.iter().enumerate() {
            push("-drive");
            push(&format!(
                "if=ide,index={},format=raw,file={}",
                i + 1,
                d.display()
            ));
        }
        for (i, d) in self.nvme.iter().enumerate() {
            push("-drive");
            push(&format!(
                "if=none,id=nvm{i},format=raw,file={}",
                d.display()
            ));
            push("-device");
            push(&format!("nvme,serial=bulkhead{i},drive=nvm{i}"));
        }
        // With no -nic, QEMU's pc machine has its default NIC, an e1000 on user networking
        // at 00:03.0 (the PCI addresses the store test expects); -nic replaces it.
        if let Some(m) = self.e1000 {
            push("-nic");
            push(&format!(
                "user,model=e1000,mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ));
        }
        match &self.serial {
            QemuSerial::File(path) => {
                push("-serial");
                push(&format!("file:{}", path.display()));
            }
            QemuSerial::Tty(path) => {
                push("-chardev");
                push(&format!("serial,id=com1,path={}", path.display()));
                push("-serial");
                push("chardev:com1");
            }
        }
        push("-device");
        push(&format!(
            "isa-debug-exit,iobase={DEBUG_EXIT_IOBASE},iosize=0x04"
        ));
        a
    }
}

/// Whether this machine can run QEMU/KVM with nested VMX: /dev/kvm, an Intel CPU with VMX,
/// and kvm_intel loaded with nested=1. (A PVM-only or AMD KVM cannot run Bulkhead.)
pub fn kvm_nested_vmx() -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_vmx = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx"));
    if !has_vmx {
        return Err("the host CPU has no VMX flag (not Intel VT-x)".into());
    }
    match std::fs::read_to_string("/sys/module/kvm_intel/parameters/nested") {
        Ok(v) if matches!(v.trim(), "Y" | "1") => Ok(()),
        Ok(_) => Err("kvm_intel is loaded without nested=1 (modprobe kvm_intel nested=1)".into()),
        Err(_) => Err("the kvm_intel module is not loaded".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(accel: Accel) -> QemuConfig {
        QemuConfig {
            accel,
            cpu: "max".into(),
            megs: 256,
            cpus: 2,
            disk: "/t/d.img".into(),
            drives: vec!["/t/ide.img".into()],
            nvme: vec!["/t/n.img".into()],
            q35: false,
            vars: "/t/vars.fd".into(),
            serial: QemuSerial::File("/t/s.txt".into()),
            e1000: None,
        }
    }

    #[test]
    fn an_e1000_replaces_the_default_nic() {
        let mut c = cfg(Accel::Tcg);
        assert!(!c.args().join(" ").contains("-nic"));
        c.e1000 = Some([0x52, 0x54, 0, 0xe1, 0, 2]);
        assert!(c
            .args()
            .join(" ")
            .contains("-nic user,model=e1000,mac=52:54:00:e1:00:02 -serial"));
    }

    #[test]
    fn tcg_uses_the_requested_cpu_and_debug_exit() {
        let a = cfg(Accel::Tcg).args().join(" ");
        assert!(a.contains("-accel tcg -cpu max"));
        assert!(a.contains("-smp 2 -m 256"));
        assert!(a.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(a.contains("-serial file:/t/s.txt"));
        assert!(a.contains("file=/t/vars.fd"));
        assert!(a.contains("-drive if=ide,index=1,format=raw,file=/t/ide.img"));
        assert!(a.contains("-drive if=none,id=nvm0,format=raw,file=/t/n.img -device nvme,serial=bulkhead0,drive=nvm0"));
    }

    #[test]
    fn com1_on_a_terminal_for_input() {
        let mut c = cfg(Accel::Kvm);
        c.serial = QemuSerial::Tty("/dev/pts/7".into());
        let a = c.args().join(" ");
        assert!(a.contains("-chardev serial,id=com1,path=/dev/pts/7 -serial chardev:com1 "));
        assert!(!a.contains("file:"));
    }

    #[test]
    fn kvm_passes_the_host_cpu_through() {
        let a = cfg(Accel::Kvm).args().join(" ");
        assert!(a.contains("-accel kvm -cpu host"));
    }
}
