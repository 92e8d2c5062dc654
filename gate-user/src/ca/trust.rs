//! How to make the system, browsers and language runtimes trust gate's CA (`gate ca trust`).

/// Prints (or with `install`, performs) the steps that make this machine trust `cert_path`.
pub fn run(cert_path: &std::path::Path, install: bool) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!(
        "`gate ca trust` is not available in this build yet ({}, install={install})",
        cert_path.display()
    )
}
