//! `calicoctl node checksystem`: whether this host has what calico-node needs, each item PASS,
//! WARN (needed only for some modes) or FAIL with what to do. Kernel features are tried for
//! real in a throwaway network namespace (a module list says little on kernels with built-in
//! drivers), so nothing on the host changes.

use std::io::Write;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Present.
    Pass,
    /// Missing, but only some modes need it.
    Warn,
    /// Missing and required.
    Fail,
}

/// One item checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What to do about it (empty on PASS).
    pub remedy: String,
}

/// What the checks ask of the host; the real one runs commands, tests use a fake.
pub trait Probe {
    /// Whether `argv` runs and exits 0.
    fn runs(&self, argv: &[&str]) -> bool;
    /// Whether a file exists.
    fn exists(&self, path: &str) -> bool;
    /// The kernel release (`uname -r`).
    fn kernel_release(&self) -> String;
    /// Whether this process runs as root.
    fn is_root(&self) -> bool;
}

/// The host itself.
pub struct HostProbe;

impl Probe for HostProbe {
    fn runs(&self, argv: &[&str]) -> bool {
        let Some((cmd, args)) = argv.split_first() else {
            return false;
        };
        std::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn kernel_release(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    fn is_root(&self) -> bool {
        // The effective uid, from /proc (no libc call needed for one number).
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            })
            .unwrap_or(false)
    }
}

/// Oldest kernel whose nftables has what felix programs (verdict maps over interface names,
/// concatenated set keys, interval sets with concatenations).
const MIN_KERNEL: (u32, u32) = (5, 6);

fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// Run every check.
pub fn check(probe: &dyn Probe) -> Vec<Item> {
    let mut items = Vec::new();
    let mut add = |name, ok: bool, missing: Outcome, remedy: &str| {
        items.push(Item {
            name,
            outcome: if ok { Outcome::Pass } else { missing },
            remedy: if ok { String::new() } else { remedy.to_owned() },
        });
    };
    let root = probe.is_root();
    add(
        "running as root",
        root,
        Outcome::Fail,
        "run as root: the kernel checks below create devices in a throwaway network namespace",
    );
    let release = probe.kernel_release();
    add(
        "kernel version",
        kernel_at_least(&release, MIN_KERNEL),
        Outcome::Fail,
        &format!(
            "kernel {release:?} is older than {}.{}: felix's nftables rules need a newer kernel",
            MIN_KERNEL.0, MIN_KERNEL.1
        ),
    );
    let netns = probe.runs(&["unshare", "--net", "true"]);
    add(
        "network namespaces",
        netns,
        Outcome::Fail,
        "enable CONFIG_NET_NS (and install util-linux for unshare)",
    );
    let in_netns = |script: &str| netns && probe.runs(&["unshare", "--net", "sh", "-c", script]);
    add(
        "veth (workload interfaces)",
        in_netns("ip link add cc0 type veth peer name cc1"),
        Outcome::Fail,
        "load the veth module (modprobe veth) and install iproute2",
    );
    add(
        "vxlan (VXLAN between hosts)",
        in_netns("ip link add cc2 type vxlan id 42 dstport 4789"),
        Outcome::Fail,
        "load the vxlan module (modprobe vxlan), or run with calico_vxlan_enabled=false and BGP",
    );
    add(
        "ipip (IP-in-IP pools only)",
        in_netns("ip link add cc3 type ipip local 192.0.2.1 remote 192.0.2.2"),
        Outcome::Warn,
        "load the ipip module (modprobe ipip) before using ipipMode pools",
    );
    add(
        "nftables (policy)",
        in_netns("nft add table inet calico_checksystem"),
        Outcome::Fail,
        "enable nf_tables in the kernel and install the nft tool (Debian: nftables)",
    );
    add(
        "libnftables",
        [
            "/usr/lib/x86_64-linux-gnu/libnftables.so.1",
            "/usr/lib/aarch64-linux-gnu/libnftables.so.1",
            "/usr/lib/libnftables.so.1",
            "/usr/lib64/libnftables.so.1",
        ]
        .iter()
        .any(|p| probe.exists(p)),
        Outcome::Warn,
        "install libnftables1 for faster programming (felix falls back to the nft command)",
    );
    add(
        "conntrack tool (flows cut when policy changes)",
        probe.runs(&["conntrack", "--version"]),
        Outcome::Fail,
        "install the conntrack tool (Debian: conntrack)",
    );
    add(
        "IPv4 forwarding sysctl",
        probe.exists("/proc/sys/net/ipv4/ip_forward"),
        Outcome::Fail,
        "enable CONFIG_INET and procfs: calico-node turns forwarding on",
    );
    add(
        "BIRD (BGP mode only)",
        probe.runs(&["bird", "--version"]) || probe.runs(&["bird", "-v"]),
        Outcome::Warn,
        "install BIRD 1.x (Debian: bird) to route between hosts with BGP",
    );
    items
}

/// Print the items as a table; true when nothing required is missing.
pub fn print(items: &[Item], out: &mut dyn Write) -> std::io::Result<bool> {
    writeln!(out, "Checking what calico-node needs on this host...")?;
    for item in items {
        let status = match item.outcome {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        };
        writeln!(out, "  {:<48}{status}", item.name)?;
        if !item.remedy.is_empty() {
            writeln!(out, "      {}", item.remedy)?;
        }
    }
    let ok = items.iter().all(|i| i.outcome != Outcome::Fail);
    if ok {
        writeln!(
            out,
            "System meets minimum system requirements to run Calico!"
        )?;
    } else {
        writeln!(
            out,
            "System doesn't meet minimum system requirements to run Calico!"
        )?;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        missing: Vec<&'static str>,
        root: bool,
        release: &'static str,
    }

    impl Probe for Fake {
        fn runs(&self, argv: &[&str]) -> bool {
            let line = argv.join(" ");
            !self.missing.iter().any(|m| line.contains(m))
        }
        fn exists(&self, path: &str) -> bool {
            !self.missing.iter().any(|m| path.contains(m))
        }
        fn kernel_release(&self) -> String {
            self.release.to_owned()
        }
        fn is_root(&self) -> bool {
            self.root
        }
    }

    fn outcome(items: &[Item], name: &str) -> Outcome {
        items
            .iter()
            .find(|i| i.name.starts_with(name))
            .unwrap()
            .outcome
    }

    #[test]
    fn a_full_host_passes_and_optional_parts_only_warn() {
        let fake = Fake {
            missing: vec!["type ipip", "bird"],
            root: true,
            release: "6.1.0-18-amd64",
        };
        let items = check(&fake);
        assert_eq!(outcome(&items, "ipip"), Outcome::Warn);
        assert_eq!(outcome(&items, "BIRD"), Outcome::Warn);
        assert_eq!(outcome(&items, "vxlan"), Outcome::Pass);
        let mut out = Vec::new();
        assert!(print(&items, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("modprobe ipip"), "{text}");
        assert!(text.ends_with("System meets minimum system requirements to run Calico!\n"));
    }

    #[test]
    fn missing_requirements_fail_with_what_to_do() {
        let fake = Fake {
            missing: vec!["type vxlan", "conntrack"],
            root: true,
            release: "4.19.0",
        };
        let items = check(&fake);
        assert_eq!(outcome(&items, "kernel"), Outcome::Fail);
        assert_eq!(outcome(&items, "vxlan"), Outcome::Fail);
        assert_eq!(outcome(&items, "conntrack"), Outcome::Fail);
        let mut out = Vec::new();
        assert!(!print(&items, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("modprobe vxlan") && text.contains("doesn't meet"),
            "{text}"
        );
        // Without root nothing can be tried in a namespace.
        let fake = Fake {
            missing: vec!["unshare"],
            root: false,
            release: "6.1.0",
        };
        let items = check(&fake);
        assert_eq!(outcome(&items, "running as root"), Outcome::Fail);
        assert_eq!(outcome(&items, "veth"), Outcome::Fail);
        assert!(kernel_at_least("5.10.0-28-amd64", MIN_KERNEL));
        assert!(!kernel_at_least("garbage", MIN_KERNEL));
    }
}
