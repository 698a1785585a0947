//! Facts about the machine that go into the node's registrar record: logical CPUs, memory, secure boot,
//! virtualisation and the serial number. Read from `/proc` and `/sys` (roots injectable for tests).

use std::path::{Path, PathBuf};

use crate::error::HostError;

/// The UEFI variable telling whether secure boot is on (5 bytes: 4 attribute bytes, then 1 = on).
pub const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// What the registrar gets when the board has no serial number (it refuses an empty one).
pub const SERIAL_PLACEHOLDER: &str = "Not Specified";

/// DMI vendor or product names of hypervisors (lower case, matched as substrings).
const HYPERVISOR_NAMES: &[&str] = &[
    "qemu",
    "kvm",
    "vmware",
    "virtualbox",
    "innotek",
    "xen",
    "bochs",
    "parallels",
    "bhyve",
    "virtual machine",
    "hyper-v",
    "openstack",
    "google compute engine",
    "amazon ec2",
    "cloud hypervisor",
    "firecracker",
];

/// Where the host facts are read.
#[derive(Clone, Debug)]
pub struct HostProbe {
    /// procfs root (`/proc`).
    pub proc_root: PathBuf,
    /// sysfs root (`/sys`).
    pub sys_root: PathBuf,
    /// Mount efivarfs on `<sys>/firmware/efi/efivars` when the machine booted with UEFI and it is not mounted.
    pub mount_efivars: bool,
}

impl Default for HostProbe {
    fn default() -> Self {
        HostProbe {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            mount_efivars: true,
        }
    }
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl HostProbe {
    /// Probe under other roots (tests); never mounts anything.
    pub fn with_roots(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> HostProbe {
        HostProbe {
            proc_root: proc_root.into(),
            sys_root: sys_root.into(),
            mount_efivars: false,
        }
    }

    /// Logical CPUs: `<sys>/devices/system/cpu/online` (e.g. `0-3,6`), else the `processor` lines of
    /// `<proc>/cpuinfo`, else what the scheduler lets this process use.
    pub fn cpu_count(&self) -> u64 {
        let online = self.sys_root.join("devices/system/cpu/online");
        if let Ok(text) = read(&online)
            && let Some(n) = parse_cpu_list(&text)
        {
            return n;
        }
        if let Ok(text) = read(&self.proc_root.join("cpuinfo")) {
            let n = text
                .lines()
                .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
                .count() as u64;
            if n > 0 {
                return n;
            }
        }
        std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1)
    }

    /// Total memory in bytes (`MemTotal` of `<proc>/meminfo`).
    pub fn memory_total(&self) -> Result<u64, HostError> {
        let path = self.proc_root.join("meminfo");
        let text = read(&path)?;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("MemTotal:") {
                let mut words = rest.split_whitespace();
                let value: u64 =
                    words
                        .next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| HostError::Parse {
                            path: path.clone(),
                            message: format!("unreadable MemTotal line {line:?}"),
                        })?;
                let factor = match words.next() {
                    Some("kB") | Some("KB") | Some("kb") => 1024,
                    None => 1,
                    Some(unit) => {
                        return Err(HostError::Parse {
                            path,
                            message: format!("unknown MemTotal unit {unit:?}"),
                        });
                    }
                };
                return Ok(value * factor);
            }
        }
        Err(HostError::Parse {
            path,
            message: "no MemTotal line".into(),
        })
    }

    /// Whether UEFI secure boot is on. False without UEFI variables (a BIOS boot), as Zero-OS does.
    pub fn secure_boot(&self) -> bool {
        let efi = self.sys_root.join("firmware/efi");
        let vars = efi.join("efivars");
        let var = vars.join(SECURE_BOOT_VAR);
        if !var.exists() && efi.is_dir() && self.mount_efivars && dir_is_empty(&vars) {
            // UEFI boot but efivarfs not mounted: mount it, as Zero-OS does.
            if let Err(e) = nix::mount::mount(
                Some("efivarfs"),
                &vars,
                Some("efivarfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                tracing::warn!(path = %vars.display(), error = %e, "mounting efivarfs failed; reporting secure boot off");
            }
        }
        match std::fs::read(&var) {
            Ok(bytes) => secure_boot_value(&bytes),
            Err(_) => false,
        }
    }

    /// Whether the machine is a virtual machine: the CPU's `hypervisor` flag, `<sys>/hypervisor/type`, or DMI
    /// names of a known hypervisor (what `virt-what` looks at for VMs; containers are not VMs).
    pub fn virtualized(&self) -> bool {
        if let Ok(cpuinfo) = read(&self.proc_root.join("cpuinfo"))
            && cpuinfo_has_hypervisor_flag(&cpuinfo)
        {
            return true;
        }
        if let Ok(t) = read(&self.sys_root.join("hypervisor/type"))
            && !t.trim().is_empty()
        {
            return true;
        }
        ["sys_vendor", "product_name", "board_vendor", "bios_vendor"]
            .iter()
            .filter_map(|f| read(&self.sys_root.join("class/dmi/id").join(f)).ok())
            .any(|v| is_hypervisor_name(&v))
    }

    /// The baseboard serial number (DMI type 2, what Zero-OS sends), or [`SERIAL_PLACEHOLDER`] when the board
    /// has none.
    pub fn serial_number(&self) -> String {
        let path = self.sys_root.join("class/dmi/id/board_serial");
        match read(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => SERIAL_PLACEHOLDER.to_string(),
        }
    }
}

fn dir_is_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut it) => it.next().is_none(),
        Err(_) => false,
    }
}

/// Count the CPUs of a kernel CPU list (`0-3,6`); `None` when unreadable.
pub fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a {
                    return None;
                }
                n += b - a + 1;
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// The value of the `SecureBoot` variable: 4 attribute bytes then the value, 1 = on.
pub fn secure_boot_value(bytes: &[u8]) -> bool {
    bytes.len() == 5 && bytes[4] == 1
}

/// Whether a `flags` line of `/proc/cpuinfo` carries `hypervisor`.
pub fn cpuinfo_has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|l| {
        let mut kv = l.splitn(2, ':');
        let key = kv.next().unwrap_or("").trim();
        (key == "flags" || key == "Features")
            && kv
                .next()
                .is_some_and(|v| v.split_whitespace().any(|f| f == "hypervisor"))
    })
}

/// Whether a DMI name is a hypervisor's.
pub fn is_hypervisor_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    !n.is_empty() && HYPERVISOR_NAMES.iter().any(|h| n.contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn facts_from_fake_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc_root, sys) = (tmp.path().join("proc"), tmp.path().join("sys"));
        let probe = HostProbe::with_roots(&proc_root, &sys);
        // Nothing there: safe defaults.
        assert!(!probe.secure_boot());
        assert!(!probe.virtualized());
        assert_eq!(probe.serial_number(), SERIAL_PLACEHOLDER);
        assert!(probe.cpu_count() >= 1);
        let err = probe.memory_total().unwrap_err().to_string();
        assert!(err.contains("meminfo"), "{err}");

        write(&sys, "devices/system/cpu/online", b"0-5\n");
        write(
            &proc_root,
            "meminfo",
            b"MemTotal:       16318412 kB\nMemFree: 1 kB\n",
        );
        write(
            &proc_root,
            "cpuinfo",
            b"processor\t: 0\nflags\t\t: fpu vme sse2\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2\n",
        );
        write(&sys, "class/dmi/id/board_serial", b"  \n");
        assert_eq!(probe.cpu_count(), 6);
        assert_eq!(probe.memory_total().unwrap(), 16318412 * 1024);
        assert!(!probe.virtualized());
        assert_eq!(probe.serial_number(), SERIAL_PLACEHOLDER);

        write(&sys, "class/dmi/id/board_serial", b"ABC-123\n");
        assert_eq!(probe.serial_number(), "ABC-123");
        write(&sys, "class/dmi/id/sys_vendor", b"QEMU\n");
        assert!(probe.virtualized());
        std::fs::remove_file(sys.join("class/dmi/id/sys_vendor")).unwrap();
        write(
            &proc_root,
            "cpuinfo",
            b"processor\t: 0\nflags\t\t: fpu hypervisor sse2\n",
        );
        assert!(probe.virtualized());

        // Without an online list, the processor lines count.
        std::fs::remove_file(sys.join("devices/system/cpu/online")).unwrap();
        assert_eq!(probe.cpu_count(), 1);

        let var = format!("firmware/efi/efivars/{SECURE_BOOT_VAR}");
        write(&sys, &var, &[6, 0, 0, 0, 0]);
        assert!(!probe.secure_boot());
        write(&sys, &var, &[6, 0, 0, 0, 1]);
        assert!(probe.secure_boot());
        write(&sys, &var, &[6, 0, 0, 0, 1, 0]);
        assert!(
            !probe.secure_boot(),
            "a variable of the wrong size is not trusted"
        );
    }

    #[test]
    fn meminfo_errors_name_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "meminfo", b"MemTotal: lots kB\n");
        let probe = HostProbe::with_roots(tmp.path(), tmp.path());
        let err = probe.memory_total().unwrap_err().to_string();
        assert!(err.contains("unreadable MemTotal"), "{err}");
        write(tmp.path(), "meminfo", b"MemTotal: 5 MB\n");
        let err = probe.memory_total().unwrap_err().to_string();
        assert!(err.contains("unknown MemTotal unit \"MB\""), "{err}");
    }

    #[test]
    fn hypervisor_names() {
        assert!(is_hypervisor_name("VMware, Inc."));
        assert!(is_hypervisor_name("innotek GmbH"));
        assert!(is_hypervisor_name("Microsoft Corporation Virtual Machine"));
        assert!(!is_hypervisor_name("Supermicro"));
        assert!(!is_hypervisor_name(""));
        assert!(cpuinfo_has_hypervisor_flag("flags : a hypervisor b"));
        assert!(!cpuinfo_has_hypervisor_flag("flags : a hypervisorx b"));
    }
}
