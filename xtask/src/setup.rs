//! Installs the toolchain pieces the kernel side needs, following TOOLCHAIN.md: rust-src for the
//! nightly toolchain and bpf-linker built against the nightly's own LLVM. Each step checks first,
//! so a second run does nothing (and never rebuilds bpf-linker).
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, sh};

/// Targets whose code CI checks with `cargo clippy` (macOS and Windows backends).
pub const CROSS_TARGETS: [&str; 2] = ["aarch64-apple-darwin", "x86_64-pc-windows-gnu"];

/// Debian packages the test suite uses: the end-to-end tests' tools, and the C compilers the
/// cross-target clippy checks need for ring's build script (clang for macOS, mingw for Windows).
const TEST_PACKAGES: [&str; 10] = [
    "iproute2",
    "curl",
    "git",
    "nftables",
    "iptables",
    "bind9-dnsutils",
    "procps",
    "openssl",
    "clang",
    "gcc-mingw-w64-x86-64",
];

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", crate::describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            crate::describe(cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn cargo_bin(name: &str) -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
        .join("bin")
        .join(name)
}

/// rust-src on nightly, then bpf-linker.
pub fn toolchain() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        sh(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if bpf_linker_works() {
        return Ok(());
    }
    install_bpf_linker()
}

fn bpf_linker_works() -> bool {
    let candidates = [PathBuf::from("bpf-linker"), cargo_bin("bpf-linker")];
    candidates.iter().any(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Builds bpf-linker against the LLVM shared library inside the nightly toolchain.
fn install_bpf_linker() -> anyhow::Result<()> {
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV names no LLVM version")?
        .trim()
        .to_string();
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    let libdir = sysroot.join("lib");
    let lib = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", libdir.display()))?;
    let prefix = home()
        .join(".cache")
        .join("gate")
        .join(format!("llvm-{major}"));
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let file_name = lib.file_name().context("libLLVM has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), file_name] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker against the nightly's LLVM {major} (about two minutes, once)"
    );
    sh(cargo()
        .env("LLVM_PREFIX", &prefix)
        .args([
            "install",
            "bpf-linker",
            "--version",
            "~0.13",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}")))
}

/// Debian packages the end-to-end tests need (root only); installs only what is missing.
pub fn test_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh(Command::new("apt-get").args(["update", "-q"]))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
}

/// The rustup targets CI checks the macOS and Windows code against.
pub fn cross_targets() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = CROSS_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh(Command::new("rustup")
        .args(["target", "add"])
        .args(&missing))
}

/// The `rust-version` the workspace declares, with that toolchain installed (minimal profile)
/// when missing, so CI can check that the declaration holds.
pub fn msrv_toolchain(root: &std::path::Path) -> anyhow::Result<String> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = \""))
        .and_then(|r| r.strip_suffix('"'))
        .context("Cargo.toml declares no rust-version")?
        .to_string();
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains
        .lines()
        .any(|l| l.starts_with(&format!("{version}-")))
    {
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            &version,
            "--profile",
            "minimal",
        ]))?;
    }
    Ok(version)
}

/// C compiler settings so ring's build script can run while clippy checks `target`: mingw for
/// Windows; for macOS, clang with stub headers (no Apple SDK here). Only type-checking happens:
/// nothing built this way is linked or run.
pub fn cross_c_env(cmd: &mut Command, root: &std::path::Path, target: &str) -> anyhow::Result<()> {
    if target.ends_with("apple-darwin") {
        let resource = output(Command::new("clang").arg("-print-resource-dir"))?;
        let shim = root.join("xtask/assets/darwin-shim");
        let var = target.replace('-', "_");
        cmd.env(format!("CC_{var}"), "clang").env(
            format!("CFLAGS_{var}"),
            format!(
                "-ffreestanding -nostdinc -isystem {}/include -isystem {}",
                resource.trim(),
                shim.display()
            ),
        );
    }
    Ok(())
}
