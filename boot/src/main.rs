//! `bulkhead-boot`: build Bulkhead's disk images and run them under emulators.

use bulkhead_boot::image::{build_images, build_kernel, default_image_dir};
use bulkhead_boot::run::{run, Platform, RunSpec};
use bulkhead_boot::{bochs, qemu, BootError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
bulkhead-boot: build Bulkhead's disk images and run them under emulators

USAGE:
  bulkhead-boot build [--out-dir DIR] [--bundle DIR | --ramdisk FILE]
      Build the kernel (x86_64-unknown-none, release) and write bulkhead-bios.img and
      bulkhead-uefi.img to DIR (default: target/images). A bundle is a directory with
      bulkhead.toml (docs/configuration.md) and the files it names (guest images, disks);
      it is checked on the host first (bulkhead.toml, and the hypervisor's own loaders run
      on every guest image and initrd it names), then packed into the boot archive that
      the images carry as their ramdisk. A --ramdisk FILE must be such an archive.
  bulkhead-boot config check FILE|DIR
  bulkhead-boot config convert OLD.conf [-o NEW.toml]
      Check a bulkhead.toml (or a bundle directory) without building; convert an old
      bulkhead.conf to TOML. `bulkhead-boot config --help` says more.
  bulkhead-boot disk init|ls|create|grow|delete|import|export DRIVE ...
      The disk store on an image file or block device: named VM disks that keep their
      data (`disk = \"NAME\"` in a virtio-blk table). `bulkhead-boot disk --help` says more.
  bulkhead-boot guests
      Build the test guests (tests/guest) into target/guests.
  bulkhead-boot image --kernel ELF [--out-dir DIR] [--ramdisk FILE]
      Create the two images from an already-built kernel ELF.
  bulkhead-boot run [--platform P] [--cpu MODEL] [--image IMG] [--timeout SECS]
                    [--cpus N] [--megs N] [--serial FILE] [--quiet] [--keep] [--drive FILE]... [--nvme FILE]...
                    [--kill-at TEXT] [--e1000 MAC] [--no-input]
      Boot an image and echo its serial console. On a terminal, what you type goes to COM1
      (the terminal in raw mode while the run lasts): Ctrl-A opens the hypervisor shell
      (`help` lists its commands; `console VM` types into a guest), Ctrl-] ends the run
      (exit status 130); --no-input leaves COM1 output only. Each --drive FILE (an image file or block
      device, e.g. a disk store) is attached as another drive and used in place: Bochs
      ata0-slave, ata1-master, ata1-slave; QEMU IDE indices 1-3. Each --nvme FILE is an NVMe
      controller with FILE as namespace 1 (QEMU only). --kill-at TEXT kills the emulator
      (a simulated power loss) once a whole serial line containing TEXT has arrived. --cpus N
      sets the emulated CPUs (default 2). --e1000 MAC adds an Intel 82540EM NIC with that
      MAC on Bochs's built-in virtual network (ethmod=vnet: host 192.168.10.1 answers ARP,
      ping and DHCP; Bochs only), for a network with an e1000 uplink. P is:
        bochs       Bochs + BIOS, VT-x emulated (BIOS image)           [default unless KVM]
        bochs-uefi  Bochs + OVMF, UEFI firmware and VT-x (UEFI image)
        qemu        QEMU TCG + OVMF, no VMX: UEFI path and diagnosis (UEFI image)
        kvm         QEMU/KVM with nested VMX, -cpu host (UEFI image)  [default when present]
        auto        kvm when this machine has nested VMX, else bochs
      MODEL is a Bochs cpu model (default corei7_skylake_x) or a QEMU -cpu (default max).
      IMG defaults to target/images/bulkhead-{bios,uefi}.img for the platform.
      Exit status: the kernel's exit status (docs/exit-status.md), 124 on timeout,
      125 when the emulator stopped without the kernel's verdict, 2 on usage errors.
  bulkhead-boot bench [--cpu MODEL] [--cpus N] [--out FILE.json] [--smoke] [--only irq|net|store|idle|kvmclock|debian|snapshot]
      Build what the benchmarks need, run them in Bochs (exit round trips, virtio-blk and
      virtio-net, Linux under Bulkhead and on bare Bochs, image sizes, per-VM memory), print
      a markdown table and write the figures as JSON to FILE (default target/bench/bench.json).
      --smoke runs only the exit round trips and sizes (other rows marked skipped);
      --only irq only the interrupt-platform rows (local APIC and IOAPIC, SMP Linux);
      --only net only the network rows (two Linux VMs on a network, the e1000 uplink);
      --only store only the store-disk rows (Linux dd O_DIRECT on a RAM disk and a store disk);
      --only idle only the PV idle rows (an idle 2-vCPU Linux: exits/s, host sleep residency);
      --only kvmclock only the kvm-clock rows (kvmclock reads, Linux clock_gettime loops);
      --only debian only Debian's stock kernel to userspace, under Bulkhead and bare;
      --only snapshot only the snapshot rows (a Linux guest snapshotted and restored
      through the serial shell: pause, size, rebuild, restore to output).
      Exit status 1 when a figure that should have been measured is missing.
  bulkhead-boot platforms
      Say which platforms this machine can run, and the Bochs CPU models with VMX.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match real_main(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bulkhead-boot: {e}");
            ExitCode::from(if matches!(e, BootError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}

struct Opts {
    args: Vec<(String, Option<String>)>,
}

impl Opts {
    fn parse(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Self, BootError> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if flags.contains(&a.as_str()) {
                out.push((a.clone(), None));
            } else if valued.contains(&a.as_str()) {
                let v = it
                    .next()
                    .ok_or_else(|| BootError::Usage(format!("{a} needs a value")))?;
                out.push((a.clone(), Some(v.clone())));
            } else {
                return Err(BootError::Usage(format!("unknown argument '{a}'")));
            }
        }
        Ok(Opts { args: out })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.args
            .iter()
            .filter(move |(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.args.iter().any(|(n, _)| n == name)
    }
}

fn real_main(args: &[String]) -> Result<u8, BootError> {
    let Some((cmd, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(2);
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(0)
        }
        "config" => config_main(rest),
        "disk" => bulkhead_boot::disk::main(rest, &mut std::io::stdout()),
        "guests" => {
            println!("{}", bulkhead_boot::image::build_guests()?.display());
            Ok(0)
        }
        "build" => {
            let o = Opts::parse(rest, &[], &["--out-dir", "--ramdisk", "--bundle"])?;
            let out = o
                .get("--out-dir")
                .map_or_else(default_image_dir, PathBuf::from);
            let ramdisk = match (o.get("--bundle"), o.get("--ramdisk")) {
                (Some(_), Some(_)) => {
                    return Err(BootError::Usage(
                        "give --bundle or --ramdisk, not both".into(),
                    ))
                }
                (Some(b), None) => Some(bulkhead_boot::image::write_ramdisk(b.as_ref(), &out)?),
                (None, r) => r.map(PathBuf::from),
            };
            if let Some(r) = &ramdisk {
                // Before the kernel build: a bad ramdisk fails in a second.
                bulkhead_boot::image::check_ramdisk(r)?;
            }
            let kernel = build_kernel()?;
            let images = build_images(&kernel, ramdisk.as_deref(), &out)?;
            println!("{}\n{}", images.bios.display(), images.uefi.display());
            Ok(0)
        }
        "image" => {
            let o = Opts::parse(rest, &[], &["--kernel", "--out-dir", "--ramdisk"])?;
            let kernel = o
                .get("--kernel")
                .ok_or_else(|| BootError::Usage("image needs --kernel ELF".into()))?;
            let out = o
                .get("--out-dir")
                .map_or_else(default_image_dir, PathBuf::from);
            let images = build_images(
                kernel.as_ref(),
                o.get("--ramdisk").map(std::path::Path::new),
                &out,
            )?;
            println!("{}\n{}", images.bios.display(), images.uefi.display());
            Ok(0)
        }
        "run" => {
            let o = Opts::parse(
                rest,
                &["--quiet", "--keep", "--no-input"],
                &[
                    "--platform",
                    "--cpu",
                    "--image",
                    "--timeout",
                    "--megs",
                    "--serial",
                    "--cpus",
                    "--drive",
                    "--nvme",
                    "--kill-at",
                    "--e1000",
                ],
            )?;
            let platform = match o.get("--platform").unwrap_or("auto") {
                "auto" => Platform::best_available(),
                p => Platform::parse(p)
                    .ok_or_else(|| BootError::Usage(format!("unknown platform '{p}'")))?,
            };
            let image = o.get("--image").map_or_else(
                || {
                    default_image_dir().join(if platform.uses_uefi() {
                        "bulkhead-uefi.img"
                    } else {
                        "bulkhead-bios.img"
                    })
                },
                PathBuf::from,
            );
            let mut spec = RunSpec::new(platform, image);
            // Two emulated CPUs unless told otherwise: Bulkhead uses every CPU.
            spec.cpus = 2;
            spec.drives = o.all("--drive").map(PathBuf::from).collect();
            spec.nvme = o.all("--nvme").map(PathBuf::from).collect();
            spec.kill_at = o.get("--kill-at").map(String::from);
            if let Some(m) = o.get("--e1000") {
                spec.e1000 = Some(vm::config::parse_mac(m).ok_or_else(|| {
                    BootError::Usage(format!(
                        "--e1000 {m}: expected a unicast MAC like 52:54:00:e1:00:01"
                    ))
                })?);
            }
            if let Some(c) = o.get("--cpu") {
                spec.cpu_model = c.to_string();
            }
            let num = |name: &str, v: &str| -> Result<u64, BootError> {
                v.parse().map_err(|_| {
                    BootError::Usage(format!("{name} takes a whole number, not '{v}'"))
                })
            };
            if let Some(t) = o.get("--timeout") {
                spec.timeout = Duration::from_secs(num("--timeout", t)?);
            }
            if let Some(m) = o.get("--megs") {
                spec.megs = u32::try_from(num("--megs", m)?)
                    .map_err(|_| BootError::Usage("--megs is too large".into()))?;
            }
            if let Some(c) = o.get("--cpus") {
                spec.cpus = u32::try_from(num("--cpus", c)?)
                    .map_err(|_| BootError::Usage("--cpus is too large".into()))?;
            }
            spec.serial_out = o.get("--serial").map(PathBuf::from);
            spec.echo = !o.has("--quiet");
            spec.keep_work_dir = o.has("--keep");
            // SAFETY: isatty only inspects the descriptor.
            spec.keyboard =
                !o.has("--no-input") && unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
            eprintln!(
                "bulkhead-boot: running {} on {} (cpu {}, timeout {} s)",
                spec.image.display(),
                platform.name(),
                spec.cpu_model,
                spec.timeout.as_secs()
            );
            if spec.keyboard {
                eprintln!(
                    "bulkhead-boot: keys go to COM1: Ctrl-A opens the hypervisor shell, Ctrl-] ends the run"
                );
            }
            let outcome = run(&spec)?;
            eprintln!("bulkhead-boot: {}", outcome.summary());
            if outcome.exit.is_none() && !outcome.quit && !outcome.emulator_log_tail.is_empty() {
                eprintln!(
                    "bulkhead-boot: emulator log tail:\n{}",
                    outcome.emulator_log_tail
                );
            }
            if let Some(w) = &outcome.work_dir {
                eprintln!("bulkhead-boot: work directory kept at {}", w.display());
            }
            Ok(u8::try_from(outcome.status_code()).unwrap_or(1))
        }
        "bench" => {
            let o = Opts::parse(
                rest,
                &["--smoke", "--quiet"],
                &["--cpu", "--out", "--cpus", "--only"],
            )?;
            let mut opts = bulkhead_boot::bench::Options::new();
            if let Some(c) = o.get("--cpu") {
                opts.cpu = c.to_string();
            }
            if let Some(f) = o.get("--out") {
                opts.out = PathBuf::from(f);
            }
            opts.smoke = o.has("--smoke");
            if let Some(c) = o.get("--cpus") {
                opts.cpus = c.parse::<u32>().ok().filter(|&n| n >= 2).ok_or_else(|| {
                    BootError::Usage(format!(
                        "--cpus takes a whole number of at least 2, not '{c}'"
                    ))
                })?;
            }
            opts.verbose = !o.has("--quiet");
            let report = match o.get("--only") {
                None => bulkhead_boot::bench::run_bench(&opts)?,
                Some("irq") => bulkhead_boot::bench::irq::run_only(&opts)?,
                Some("net") => bulkhead_boot::bench::net::run_only(&opts)?,
                Some("store") => bulkhead_boot::bench::store::run_only(&opts)?,
                Some("idle") => bulkhead_boot::bench::pvidle::run_only(&opts)?,
                Some("kvmclock") => bulkhead_boot::bench::kvmclock::run_only(&opts)?,
                Some("debian") => bulkhead_boot::bench::debian::run_only(&opts)?,
                Some("snapshot") => bulkhead_boot::bench::snapshot::run_only(&opts)?,
                Some(other) => {
                    return Err(BootError::Usage(format!(
                        "--only takes 'irq' (the interrupt-platform rows), 'net' (the network rows), 'store' (the store-disk rows), 'idle' (the PV idle rows), 'kvmclock' (the kvm-clock rows), 'debian' (Debian's kernel, under Bulkhead and bare) or 'snapshot' (a Linux guest snapshotted and restored), not '{other}'"
                    )))
                }
            };
            print!("{}", report.markdown());
            println!("\nJSON: {}", opts.out.display());
            let missing = report.missing();
            for f in &missing {
                eprintln!(
                    "bulkhead-boot: bench: not measured: {} / {}",
                    f.section, f.name
                );
            }
            Ok(u8::from(!missing.is_empty()))
        }
        "platforms" => {
            for p in Platform::ALL {
                let state = match p {
                    Platform::Kvm => qemu::kvm_nested_vmx()
                        .map(|()| "available".to_string())
                        .unwrap_or_else(|w| format!("unavailable: {w}")),
                    Platform::Bochs | Platform::BochsUefi => {
                        if std::path::Path::new("/usr/bin/bochs-bin").exists() {
                            "available".into()
                        } else {
                            "unavailable: run scripts/setup".into()
                        }
                    }
                    Platform::Qemu => {
                        if std::path::Path::new(qemu::OVMF_CODE).exists() {
                            "available".into()
                        } else {
                            "unavailable: run scripts/setup".into()
                        }
                    }
                };
                println!("{:<11} {state}", p.name());
            }
            println!("best: {}", Platform::best_available().name());
            println!("Bochs CPU models with VMX: {}", bochs::VMX_MODELS.join(" "));
            Ok(0)
        }
        other => Err(BootError::Usage(format!("unknown command '{other}'"))),
    }
}

const CONFIG_HELP: &str = "\
bulkhead-boot config: check and convert Bulkhead's configuration (docs/configuration.md)

USAGE:
  bulkhead-boot config check FILE|DIR
      Check a bulkhead.toml without building an image: TOML syntax, unknown keys (with the
      closest known key), sizes, names, limits and kind-specific keys; each error names its
      line and column. With a bundle DIR, also run the checks `build --bundle` runs: every
      file the configuration names is in the directory, every guest image and initrd loads
      into the VM's memory with the hypervisor's loaders (a malformed ELF or bzImage, an
      initrd larger than RAM, a kernel that needs more memory fail here). Prints a summary
      of the VMs; exit status 1 on the first error.
  bulkhead-boot config convert OLD.conf [-o NEW.toml]
      Convert the old INI-like bulkhead.conf ([vm NAME] sections) to bulkhead.toml, keeping
      comments; write it to NEW.toml (refusing to overwrite an existing file) or to standard
      output. The result is checked like `config check`; errors name the old file's line.
";

fn config_main(args: &[String]) -> Result<u8, BootError> {
    let wants_help = |a: &[String]| a.iter().any(|a| a == "-h" || a == "--help");
    match args.split_first() {
        None => {
            print!("{CONFIG_HELP}");
            Ok(2)
        }
        Some((_, rest)) if wants_help(rest) || wants_help(&args[..1]) => {
            print!("{CONFIG_HELP}");
            Ok(0)
        }
        Some((cmd, rest)) if cmd == "check" => {
            let [path] = rest else {
                return Err(BootError::Usage(
                    "config check takes one FILE or DIR".into(),
                ));
            };
            let path = std::path::Path::new(path);
            let config = if path.is_dir() {
                bulkhead_boot::image::check_bundle(path)?
            } else {
                let text = std::fs::read(path).map_err(|source| BootError::Io {
                    what: "cannot read".into(),
                    path: path.to_path_buf(),
                    source,
                })?;
                vm::config::Config::parse(&text).map_err(|e| {
                    BootError::Config(e.located(&path.display().to_string()).to_string())
                })?
            };
            println!("{}: ok", path.display());
            for line in bulkhead_boot::image::summary(&config) {
                println!("  {line}");
            }
            Ok(0)
        }
        Some((cmd, rest)) if cmd == "convert" => {
            let o = Opts::parse_positional(rest, &["-o", "--output"])?;
            let [input] = o.positional.as_slice() else {
                return Err(BootError::Usage("config convert takes one OLD.conf".into()));
            };
            let input = std::path::Path::new(input);
            let text = std::fs::read_to_string(input).map_err(|source| BootError::Io {
                what: "cannot read".into(),
                path: input.to_path_buf(),
                source,
            })?;
            let name = input.file_name().map_or_else(
                || input.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let converted = bulkhead_boot::convert::convert(&text, &name)
                .map_err(|e| BootError::Config(format!("{}: {e}", input.display())))?;
            for note in &converted.notes {
                eprintln!("bulkhead-boot: note: {note}");
            }
            match o.opts.get("-o").or_else(|| o.opts.get("--output")) {
                Some(out) => {
                    let out = std::path::Path::new(out);
                    if out.exists() {
                        return Err(BootError::Usage(format!(
                            "{} exists; remove it or choose another -o",
                            out.display()
                        )));
                    }
                    std::fs::write(out, &converted.toml).map_err(|source| BootError::Io {
                        what: "cannot write".into(),
                        path: out.to_path_buf(),
                        source,
                    })?;
                    eprintln!(
                        "bulkhead-boot: wrote {} ({} VM(s)); delete {} once you have checked it",
                        out.display(),
                        converted.config.vms.len(),
                        input.display()
                    );
                }
                None => print!("{}", converted.toml),
            }
            Ok(0)
        }
        Some((other, _)) => Err(BootError::Usage(format!(
            "unknown config command '{other}': use check or convert"
        ))),
    }
}

/// Options with values plus positional arguments.
struct Positional {
    opts: Opts,
    positional: Vec<String>,
}

impl Opts {
    fn parse_positional(args: &[String], valued: &[&str]) -> Result<Positional, BootError> {
        let mut named = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if valued.contains(&a.as_str()) {
                let v = it
                    .next()
                    .ok_or_else(|| BootError::Usage(format!("{a} needs a value")))?;
                named.push((a.clone(), Some(v.clone())));
            } else if a.starts_with('-') {
                return Err(BootError::Usage(format!("unknown argument '{a}'")));
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Positional {
            opts: Opts { args: named },
            positional,
        })
    }
}
