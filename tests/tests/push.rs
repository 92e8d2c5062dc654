//! End-to-end tests of `git push` scanning (issue 6): real git through the real `gate serve`
//! against a local smart-HTTP server (`git http-backend` behind the test upstream). A push that
//! carries a secret is refused in git's own protocol, so plain `git push` says why.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gate_tests::serve::Served;
use gate_tests::upstream::{Options, TestCa, Upstream};

fn aws_key() -> String {
    format!("AKIA{}{}", "ZXCVBNMLKJ", "HGFDSA")
}

struct Repo {
    dir: tempfile::TempDir,
    _ca: TestCa,
    _up: Upstream,
    gate: Served,
    url: String,
}

impl Repo {
    /// A bare repository behind the upstream, gate serve in `mode` in front, a clone in `work`.
    fn new(mode: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        let mut o = Options::new(&["git.test"]);
        o.git_root = Some(repos.clone());
        let up = Upstream::start_with(&ca, o);
        let gate = Served::start(&["git.test"], mode, &ca, &up, &[]);
        let url = format!("https://git.test:{}/git/repo.git", up.port());
        let repo = Repo {
            dir,
            _ca: ca,
            _up: up,
            gate,
            url,
        };
        let out = repo.git(&repos, &["init", "-q", "--bare", "-b", "main", "repo.git"]);
        assert!(out.status.success());
        let out = repo.git(repo.dir.path(), &["clone", "-q", &repo.url, "work"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(["-c", &format!("http.proxy={}", self.gate.fwd)])
            .args([
                "-c",
                "user.name=agent",
                "-c",
                "user.email=agent@example.invalid",
            ])
            .args(args)
            .current_dir(cwd)
            .env("GIT_SSL_CAINFO", self.gate.ca_cert())
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap()
    }

    fn commit(&self, file: &str, text: &str, message: &str) -> String {
        let path = self.work().join(file);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        assert!(self.git(&self.work(), &["add", file]).status.success());
        let out = self.git(&self.work(), &["commit", "-q", "-m", message]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.git(&self.work(), &["rev-parse", "--short=7", "HEAD"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn push(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["push", "origin", "main"];
        args.extend_from_slice(extra);
        let out = self.git(&self.work(), &args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn remote_head(&self) -> String {
        let out = self.git(
            self.dir.path(),
            &["ls-remote", &self.url, "refs/heads/main"],
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

#[test]
fn a_new_file_with_a_secret_is_refused_in_gits_own_words() {
    let repo = Repo::new("block");
    let sha = repo.commit(
        "config/prod.env",
        &format!("AWS_ACCESS_KEY_ID={}\n", aws_key()),
        "add config",
    );
    let (ok, err) = repo.push(&[]);
    assert!(!ok, "the push must fail");
    assert!(
        err.contains(&format!(
            "remote: [gate] push blocked: 1 secret (aws-access-key-id) in config/prod.env of {sha}"
        )),
        "{err}"
    );
    assert!(err.contains("! [remote rejected] main -> main"), "{err}");
    assert!(!err.contains(&aws_key()));
    assert_eq!(repo.remote_head(), "", "nothing landed");
    let audit = repo.gate.audit_text();
    assert!(audit.contains("config/prod.env@") && audit.contains("aws-access-key-id"));
    assert!(!audit.contains(&aws_key()));
}

#[test]
fn clean_pushes_go_through_and_an_edit_adding_a_secret_is_caught() {
    let repo = Repo::new("block");
    // A sizeable clean file that the next commit edits (so git may send a delta).
    let mut big = String::new();
    for i in 0..2000 {
        big.push_str(&format!("line {i}: nothing to see here\n"));
    }
    repo.commit("src/settings.txt", &big, "clean start");
    let (ok, err) = repo.push(&[]);
    assert!(ok, "a clean push succeeds: {err}");
    assert!(repo.remote_head().len() > 40);
    let edited = big.replacen(
        "line 1000: nothing",
        &format!("line 1000: key {} nothing", aws_key()),
        1,
    );
    let sha = repo.commit("src/settings.txt", &edited, "tweak");
    let (ok, err) = repo.push(&[]);
    assert!(!ok);
    assert!(
        err.contains("remote: [gate] push blocked") && err.contains("aws-access-key-id"),
        "{err}"
    );
    assert!(
        err.contains("src/settings.txt") || err.contains("an edit of object"),
        "{err}"
    );
    let _ = sha;
}

#[test]
fn secrets_in_commit_messages_and_annotated_tags_are_caught() {
    let repo = Repo::new("block");
    repo.commit("a.txt", "fine\n", &format!("temporary creds {}", aws_key()));
    let (ok, err) = repo.push(&[]);
    assert!(!ok);
    assert!(err.contains("commit message"), "{err}");

    let repo = Repo::new("block");
    repo.commit("a.txt", "fine\n", "clean");
    assert!(repo.push(&[]).0);
    let out = repo.git(
        &repo.work(),
        &[
            "tag",
            "-a",
            "v1",
            "-m",
            &format!("release with {}", aws_key()),
        ],
    );
    assert!(out.status.success());
    let out = repo.git(&repo.work(), &["push", "origin", "v1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote: [gate] push blocked") && err.contains("tag"),
        "{err}"
    );
}

#[test]
fn redact_mode_refuses_pushes_too_and_says_why() {
    let repo = Repo::new("redact");
    repo.commit(".env", &format!("KEY={}\n", aws_key()), "env");
    let (ok, err) = repo.push(&[]);
    assert!(!ok);
    assert!(err.contains("remote: [gate]"), "{err}");
    assert!(
        err.contains("rewritten"),
        "the message says a pack cannot be rewritten: {err}"
    );
}

#[test]
fn a_malformed_pack_is_refused_with_a_reason() {
    let repo = Repo::new("block");
    // A receive-pack request whose pack is garbage: refused, never forwarded.
    let line = format!(
        "{} {} refs/heads/main\0report-status side-band-64k\n",
        "0".repeat(40),
        "1".repeat(40)
    );
    let mut body = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\x01garbage that is not zlib at all");
    let path = format!(
        "{}/git-receive-pack",
        repo.url.trim_start_matches("https://git.test")
    );
    let path = path.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let out = repo.gate.curl(
        &format!(
            "git.test:{}",
            repo.url
                .split(':')
                .nth(2)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
        ),
        &path,
        Some(&body),
        &["-H", "content-type: application/x-git-receive-pack-request"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[gate]") && text.contains("could not be checked"),
        "{text}"
    );
    assert_eq!(repo.remote_head(), "");
}

#[test]
fn a_large_clean_repository_pushes_successfully() {
    let repo = Repo::new("block");
    // About 12 MiB of varied, secret-free text in 300 files.
    for f in 0..300 {
        let mut text = String::with_capacity(40_000);
        for l in 0..1000 {
            text.push_str(&format!(
                "file {f} line {l}: {:x}\n",
                (f * 7919 + l * 104_729) % 1_000_003
            ));
        }
        let path = repo.work().join(format!("data/f{f:03}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    assert!(repo.git(&repo.work(), &["add", "data"]).status.success());
    assert!(
        repo.git(&repo.work(), &["commit", "-q", "-m", "bulk"])
            .status
            .success()
    );
    let (ok, err) = repo.push(&[]);
    assert!(ok, "{err}");
    assert!(repo.remote_head().len() > 40);
}
