//! `gate scan` and `gate rules` driven through the built binary: exit codes, the three output
//! formats (snapshots, secrets masked), .gitignore, binary files, stdin, custom rule files and
//! known values. Fixture secrets are assembled at run time from obviously synthetic pieces.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn aws_key() -> String {
    format!("AKIA{}{}", "EXAMPLE", "23456XYZA")
}
fn github_token() -> String {
    format!("ghp_{}{}", "EXAMPLE0a1B2c3D4e5F6", "g7H8i9JkLmNoPqRs")
}
fn db_password() -> String {
    format!("{}-{}", "Synth3tic", "Pw-42")
}

/// A `gate` command with a clean environment: no config file, no secrets in the environment.
fn gate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gate"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .current_dir(dir);
    c
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gate");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}
fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// No output of gate may contain a whole fixture secret.
fn assert_masked(o: &Output) {
    for s in [aws_key(), github_token(), db_password()] {
        assert!(!stdout(o).contains(&s), "stdout leaks a secret");
        assert!(!stderr(o).contains(&s), "stderr leaks a secret");
    }
}

/// A project folder: two files with secrets, one ignored by .gitignore, one binary, one clean.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("proj");
    std::fs::create_dir_all(p.join("src")).unwrap();
    std::fs::write(p.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(
        p.join("src/config.py"),
        format!(
            "import os\n\nREGION = \"eu-west-1\"\naws_access_key_id = \"{}\"\n",
            aws_key()
        ),
    )
    .unwrap();
    std::fs::write(
        p.join(".env"),
        format!("HOST=localhost\nDB_PASSWORD={}\n", db_password()),
    )
    .unwrap();
    std::fs::write(p.join("ignored.txt"), github_token()).unwrap();
    let mut bin = b"\x89PNG\0\0\0".to_vec();
    bin.extend_from_slice(github_token().as_bytes());
    std::fs::write(p.join("logo.png"), bin).unwrap();
    std::fs::write(p.join("README.md"), "# clean\nNothing to see.\n").unwrap();
    dir
}

#[test]
fn scan_folder_text_honours_gitignore_and_skips_binaries() {
    let dir = project();
    let o = run(gate(dir.path()).args(["scan", "proj"]), None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_masked(&o);
    insta::assert_snapshot!("scan_text", stdout(&o));
    assert!(
        stderr(&o).contains("2 findings in 2 of 4 inputs scanned, 1 binary skipped"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn scan_json_is_one_object_per_finding_with_offsets() {
    let dir = project();
    let o = run(
        gate(dir.path()).args(["scan", "--format", "json", "proj"]),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_masked(&o);
    let out = stdout(&o);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in ["rule", "file", "line", "start", "end"] {
            assert!(v.get(k).is_some(), "missing {k} in {line}");
        }
        // The offsets point at the secret in the file.
        let file = std::fs::read(dir.path().join(v["file"].as_str().unwrap())).unwrap();
        let (s, e) = (
            v["start"].as_u64().unwrap() as usize,
            v["end"].as_u64().unwrap() as usize,
        );
        let secret = String::from_utf8(file[s..e].to_vec()).unwrap();
        assert!(
            secret == aws_key() || secret == db_password(),
            "span {s}..{e}"
        );
    }
    insta::assert_snapshot!("scan_json", out);
}

#[test]
fn scan_sarif_is_valid_sarif() {
    let dir = project();
    let o = run(
        gate(dir.path()).args(["scan", "--format", "sarif", "proj"]),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_masked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 2);
    insta::assert_snapshot!(
        "scan_sarif",
        stdout(&o).replace(env!("CARGO_PKG_VERSION"), "[version]")
    );
}

#[test]
fn scan_stdin_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let clean = run(gate(dir.path()).arg("scan"), Some(b"just some text\n"));
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert_eq!(stdout(&clean), "");
    let input = format!("line one\ntoken: {}\n", github_token());
    let found = run(gate(dir.path()).args(["scan", "-"]), Some(input.as_bytes()));
    assert_eq!(found.status.code(), Some(1));
    assert_masked(&found);
    insta::assert_snapshot!("scan_stdin", stdout(&found));
}

#[test]
fn scan_missing_path_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(gate(dir.path()).args(["scan", "does-not-exist.txt"]), None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does-not-exist.txt"), "{}", stderr(&o));
}

#[test]
fn custom_signatures_file_adds_rules_and_bad_ones_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("signatures.yaml"),
        "- MyCompany:\n    - Internal API Key: \"myco_[a-zA-Z0-9]{32}\"\n",
    )
    .unwrap();
    let input = format!("key = myco_{}\n", "EXAMPLEexample0123456789abcdefgh");
    let o = run(
        gate(dir.path()).args(["scan", "--signatures", "signatures.yaml", "-"]),
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("mycompany-internal-api-key"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("keywords"), "{}", stderr(&o));

    // Keywords that miss a form the regex allows: the scan runs, and says so.
    std::fs::write(
        dir.path().join("gap.yaml"),
        "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: 'acm[et]_[a-z0-9]{24}'\n",
    )
    .unwrap();
    let o = run(
        gate(dir.path()).args(["scan", "--signatures", "gap.yaml", "-"]),
        Some(b"nothing here"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rule acme-key: matches \"acmt_000000000000000000000000\"")
            && stderr(&o).contains("gate rules check gap.yaml"),
        "{}",
        stderr(&o)
    );

    std::fs::write(
        dir.path().join("bad.yaml"),
        "- MyCompany:\n    - Good: \"good_[a-z]{8}\"\n    - Broken: \"broken_[a-z\"\n",
    )
    .unwrap();
    let o = run(
        gate(dir.path()).args(["scan", "--signatures", "bad.yaml", "-"]),
        Some(b"x"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml:3: rule `mycompany-broken`: invalid regex"),
        "{err}"
    );
}

#[test]
fn known_values_from_the_environment_are_found_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let value = format!("{}{}", "kv-EXAMPLE-", "Zq8vR3mK9pLw");
    // The value travels base64-encoded inside a Basic credential.
    let encoded = {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let data = format!("user:{value}");
        let mut out = String::new();
        for c in data.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let input = format!("cached credential {encoded}\n");
    let o = run(
        gate(dir.path())
            .env("INTERNAL_SERVICE_TOKEN", &value)
            .args(["scan", "--no-entropy"]),
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("known-value (known value: $INTERNAL_SERVICE_TOKEN)"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(&value));
    let o = run(
        gate(dir.path())
            .env("INTERNAL_SERVICE_TOKEN", &value)
            .args(["scan", "--no-entropy", "--no-known-values"]),
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn entropy_detector_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!("session_key = \"{}{}\"\n", "Zq8vR3mK9pLw2xT7", "bN4cQ1sY");
    let on = run(gate(dir.path()).arg("scan"), Some(input.as_bytes()));
    assert_eq!(on.status.code(), Some(1), "{}", stderr(&on));
    assert!(
        stdout(&on).contains("high-entropy-assignment"),
        "{}",
        stdout(&on)
    );
    let off = run(
        gate(dir.path()).args(["scan", "--no-entropy"]),
        Some(input.as_bytes()),
    );
    assert_eq!(off.status.code(), Some(0), "{}", stdout(&off));
}

#[test]
fn rules_list_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(gate(dir.path()).args(["rules", "list"]), None);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).lines().count() >= 170);
    let o = run(
        gate(dir.path()).args(["rules", "list", "--format", "json"]),
        None,
    );
    let first: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert!(first["id"].is_string() && first["keywords"].is_array());

    let o = run(gate(dir.path()).args(["rules", "check"]), None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 failure(s)"));

    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: '\\bacme_[a-z0-9]{24}\\b'\n    examples: ['k = acme_0123456789abcdefghijklmn']\n    negative: ['acme_short', 'again acme_0123456789abcdefghijklmn']\n",
    )
    .unwrap();
    let o = run(
        gate(dir.path()).args(["rules", "check", "rules.yaml"]),
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("rules.yaml:2: rule acme-key: negative example #2 is detected"),
        "{}",
        stdout(&o)
    );

    // Keywords that leave out a form the regex allows: the examples pass, the check does not.
    std::fs::write(
        dir.path().join("gap.yaml"),
        "rules:\n  - id: acme-key\n    service: Acme\n    keywords: [acme_]\n    pattern: 'acm[et]_[a-z0-9]{24}'\n    examples: ['k = acme_0123456789abcdefghijklmn']\n    negative: ['acme_short']\n",
    )
    .unwrap();
    let o = run(gate(dir.path()).args(["rules", "check", "gap.yaml"]), None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(
            "gap.yaml:2: rule acme-key: matches \"acmt_000000000000000000000000\", which holds none of its keywords"
        ),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("1 failure(s)"), "{}", stdout(&o));

    std::fs::write(
        dir.path().join("broken.yaml"),
        "rules:\n  - id: acme-key\n    service: Acme\n    pattern: 'acme_[a-z'\n",
    )
    .unwrap();
    let o = run(
        gate(dir.path()).args(["rules", "check", "broken.yaml"]),
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("broken.yaml:2: rule `acme-key`: invalid regex: unclosed character class"),
        "{}",
        stderr(&o)
    );

    std::fs::write(
        dir.path().join("dup.yaml"),
        "rules:\n  - id: aws-access-key-id\n    service: Acme\n    pattern: 'acme_[a-z]{8}'\n",
    )
    .unwrap();
    let o = run(gate(dir.path()).args(["rules", "check", "dup.yaml"]), None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("dup.yaml:2: rule id `aws-access-key-id` is defined twice"),
        "{}",
        stderr(&o)
    );
}
