//! `gate ca`: the local CA's lifecycle: make it, say where it is, show it, get it trusted.
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::ca::Ca;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Make gate's CA (ECDSA P-256, key file mode 0600) in the data directory; never overwrites.
    Init,
    /// Print the path of the CA certificate.
    Path,
    /// Print the CA certificate (PEM) and where it lives.
    Show,
    /// Print how to make this system and common runtimes trust the CA (with --install, do it).
    Trust {
        /// Install into the system trust store instead of only printing the steps.
        #[arg(long)]
        install: bool,
    },
}

pub fn run(_global: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let dir = crate::dirs::data_dir();
    match &args.action {
        Action::Init => {
            let ca = Ca::init(&dir)?;
            println!("{}", ca.cert_path().display());
            eprintln!(
                "gate: made a new CA; key {} (mode 0600). Run `gate ca trust` to see how to trust it.",
                ca.key_path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Path => {
            let path = Ca::cert_path_in(&dir);
            println!("{}", path.display());
            if path.exists() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("gate: no CA there yet: run `gate ca init`");
                Ok(ExitCode::from(1))
            }
        }
        Action::Show => {
            let ca = Ca::load(&dir)?;
            println!("# {}", ca.cert_path().display());
            print!("{}", ca.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
        Action::Trust { install } => {
            let ca = Ca::load_or_init(&dir).context("loading gate's CA")?;
            crate::ca::trust::run(&ca.cert_path(), *install)
        }
    }
}
