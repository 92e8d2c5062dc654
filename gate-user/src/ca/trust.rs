//! How to make the system, browsers and language runtimes trust gate's CA (`gate ca trust`).
//!
//! gate run already points the agent's tools at the CA through environment variables; this is
//! for everything that reads only the system store. The steps are printed for every platform;
//! `--install` performs the Linux system-store step (Debian/Ubuntu or Fedora layout).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

/// Where the CA goes in each Linux trust store, and the command that rebuilds the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    pub distro: &'static str,
    pub dest: PathBuf,
    pub command: Vec<&'static str>,
}

/// The Linux trust store layout under `root` (`/` on a real system), if one is recognised.
pub fn install_plan(root: &Path) -> Option<InstallPlan> {
    let has = |p: &str| root.join(p.trim_start_matches('/')).exists();
    if has("/usr/sbin/update-ca-certificates") || has("/usr/local/share/ca-certificates") {
        Some(InstallPlan {
            distro: "Debian/Ubuntu",
            dest: root.join("usr/local/share/ca-certificates/gate.crt"),
            command: vec!["update-ca-certificates"],
        })
    } else if has("/usr/bin/update-ca-trust") || has("/etc/pki/ca-trust/source/anchors") {
        Some(InstallPlan {
            distro: "Fedora/RHEL",
            dest: root.join("etc/pki/ca-trust/source/anchors/gate.crt"),
            command: vec!["update-ca-trust", "extract"],
        })
    } else {
        None
    }
}

/// The steps for every platform and runtime, with `cert` filled in.
pub fn instructions(cert: &Path) -> String {
    let c = cert.display();
    let mut s = String::new();
    let _ = writeln!(s, "gate's CA certificate: {c}");
    s.push_str(
        "gate run already sets SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE and \
         friends for the agent;\nthe steps below are for tools that read only their own or the \
         system's trust store.\n\n",
    );
    let _ = writeln!(s, "Debian / Ubuntu:");
    let _ = writeln!(
        s,
        "  sudo cp {c} /usr/local/share/ca-certificates/gate.crt && sudo update-ca-certificates"
    );
    let _ = writeln!(
        s,
        "  undo: sudo rm /usr/local/share/ca-certificates/gate.crt && sudo update-ca-certificates --fresh"
    );
    let _ = writeln!(s, "  (or: sudo gate ca trust --install)\n");
    let _ = writeln!(s, "Fedora / RHEL / CentOS:");
    let _ = writeln!(
        s,
        "  sudo cp {c} /etc/pki/ca-trust/source/anchors/gate.crt && sudo update-ca-trust extract"
    );
    let _ = writeln!(
        s,
        "  undo: sudo rm /etc/pki/ca-trust/source/anchors/gate.crt && sudo update-ca-trust extract"
    );
    let _ = writeln!(s, "  (or: sudo gate ca trust --install)\n");
    let _ = writeln!(s, "macOS (system keychain):");
    let _ = writeln!(
        s,
        "  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {c}"
    );
    let _ = writeln!(s, "  undo: sudo security remove-trusted-cert -d {c}\n");
    let _ = writeln!(s, "Windows (elevated prompt):");
    let _ = writeln!(s, "  certutil -addstore -f Root \"{c}\"");
    let _ = writeln!(
        s,
        "  or PowerShell: Import-Certificate -FilePath \"{c}\" -CertStoreLocation Cert:\\LocalMachine\\Root"
    );
    let _ = writeln!(
        s,
        "  undo: certutil -delstore Root <serial or subject of the gate CA>\n"
    );
    let _ = writeln!(s, "Node.js (does not read the system store):");
    let _ = writeln!(s, "  export NODE_EXTRA_CA_CERTS={c}\n");
    let _ = writeln!(
        s,
        "Python (requests, pip, httpx use certifi, not the system store):"
    );
    let _ = writeln!(
        s,
        "  cat /etc/ssl/certs/ca-certificates.crt {c} > ~/.gate-bundle.pem   # keep the public roots"
    );
    let _ = writeln!(
        s,
        "  export REQUESTS_CA_BUNDLE=~/.gate-bundle.pem SSL_CERT_FILE=~/.gate-bundle.pem PIP_CERT=~/.gate-bundle.pem\n"
    );
    let _ = writeln!(s, "Java (keystore of the JDK in use):");
    let _ = writeln!(
        s,
        "  sudo keytool -importcert -noprompt -trustcacerts -cacerts -storepass changeit -alias gate -file {c}"
    );
    let _ = writeln!(
        s,
        "  undo: sudo keytool -delete -cacerts -storepass changeit -alias gate\n"
    );
    let _ = writeln!(
        s,
        "Firefox / NSS (Chrome on Linux too; certutil is in libnss3-tools / nss-tools):"
    );
    let _ = writeln!(
        s,
        "  certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n gate -i {c}"
    );
    let _ = writeln!(
        s,
        "  Firefox profile: certutil -d sql:<profile dir> -A -t \"C,,\" -n gate -i {c}"
    );
    let _ = writeln!(
        s,
        "  or set security.enterprise_roots.enabled = true in about:config to use the system store"
    );
    let _ = writeln!(s, "  undo: certutil -d sql:$HOME/.pki/nssdb -D -n gate");
    s
}

/// `gate ca trust [--install]`.
pub fn run(cert_path: &Path, install: bool) -> anyhow::Result<ExitCode> {
    print!("{}", instructions(cert_path));
    if !install {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    install_system(cert_path)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(target_os = "linux")]
fn install_system(cert_path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::MetadataExt;
    let pem = std::fs::read_to_string(cert_path)
        .with_context(|| format!("no CA at {} (gate ca init makes one)", cert_path.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!("{} is not a PEM certificate", cert_path.display());
    }
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        bail!("installing into the system trust store needs root: sudo gate ca trust --install");
    }
    let plan = install_plan(Path::new("/")).context(
        "no Debian/Ubuntu or Fedora trust store found: follow the steps above for this system",
    )?;
    if let Some(dir) = plan.dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&plan.dest, pem).with_context(|| format!("writing {}", plan.dest.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plan.dest, std::fs::Permissions::from_mode(0o644))?;
    }
    let status = std::process::Command::new(plan.command[0])
        .args(&plan.command[1..])
        .status()
        .with_context(|| format!("running {}", plan.command.join(" ")))?;
    if !status.success() {
        bail!("{} failed ({status})", plan.command.join(" "));
    }
    println!(
        "installed: {} ({}), trust store rebuilt with `{}`",
        plan.dest.display(),
        plan.distro,
        plan.command.join(" ")
    );
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn install_system(_cert_path: &Path) -> anyhow::Result<()> {
    bail!("--install is automated on Linux only: run the steps above for this system")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_and_runtime_is_covered() {
        let text = instructions(Path::new("/data/gate/ca.pem"));
        for needle in [
            "update-ca-certificates",
            "update-ca-trust extract",
            "security add-trusted-cert",
            "certutil -addstore -f Root",
            "NODE_EXTRA_CA_CERTS=/data/gate/ca.pem",
            "REQUESTS_CA_BUNDLE",
            "keytool -importcert",
            "certutil -d sql:$HOME/.pki/nssdb -A",
            "security.enterprise_roots.enabled",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn install_plan_follows_the_layout() {
        let debian = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(debian.path().join("usr/local/share/ca-certificates")).unwrap();
        let plan = install_plan(debian.path()).unwrap();
        assert_eq!(plan.distro, "Debian/Ubuntu");
        assert_eq!(
            plan.dest,
            debian
                .path()
                .join("usr/local/share/ca-certificates/gate.crt")
        );
        assert_eq!(plan.command, ["update-ca-certificates"]);

        let fedora = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fedora.path().join("etc/pki/ca-trust/source/anchors")).unwrap();
        let plan = install_plan(fedora.path()).unwrap();
        assert_eq!(plan.distro, "Fedora/RHEL");
        assert_eq!(plan.command, ["update-ca-trust", "extract"]);

        let bare = tempfile::tempdir().unwrap();
        assert!(install_plan(bare.path()).is_none());
    }
}
