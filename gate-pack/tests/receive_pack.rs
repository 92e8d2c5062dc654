//! End-to-end tests of the push parser against real git: bodies captured from `git push` to a
//! loopback receiver (which answers with gate's refusal, so real git's output is checked too)
//! or built with `git pack-objects`.

mod common;

use common::{Mode, Repo, Server, generate_history, push};
use gate_pack::{
    Finding, ItemKind, Limits, Oid, PackError, ReceivePack, Refusal, parse_push_request,
    parse_receive_pack, refusal_response,
};
use sha1::{Digest, Sha1};

fn secret() -> String {
    // built at run time so this file does not itself look like it holds a key
    format!("AKIA{}", "Q3EGJ7NXW2PLM4ZT")
}

fn findings(rp: &ReceivePack) -> Vec<Finding> {
    let s = secret();
    rp.items
        .iter()
        .filter(|i| i.data.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|i| Finding {
            rule: "aws-access-key".into(),
            path: i.location(),
            commit: i.commit.map(|c| c.short()).unwrap_or_default(),
        })
        .collect()
}

/// The proxy's job in miniature: parse, "scan", refuse.
fn refuse_mode() -> Mode {
    Mode::Answer(Box::new(|body: &[u8]| {
        let (req, found, reason) = match parse_receive_pack(body, &Limits::default()) {
            Ok(rp) => {
                let f = findings(&rp);
                (rp.request, f, None)
            }
            Err(e) => (
                parse_push_request(body).unwrap_or_default(),
                Vec::new(),
                Some(e.to_string()),
            ),
        };
        let r = refusal_response(
            &req,
            &Refusal {
                findings: &found,
                reason: reason.as_deref(),
            },
        );
        (r.status, r.content_type.to_owned(), r.body)
    }))
}

fn parse(body: &[u8]) -> ReceivePack {
    parse_receive_pack(body, &Limits::default()).expect("real push parses")
}

fn items_with_secret(rp: &ReceivePack) -> Vec<&gate_pack::ScanItem> {
    let s = secret();
    rp.items
        .iter()
        .filter(|i| i.data.windows(s.len()).any(|w| w == s.as_bytes()))
        .collect()
}

/// Every object item must be byte-identical to what git stores under its id.
fn assert_objects_match_git(repo: &Repo, rp: &ReceivePack) {
    for item in &rp.items {
        if let (Some(oid), ItemKind::Blob | ItemKind::Commit | ItemKind::Tag) =
            (item.oid, item.kind)
        {
            assert_eq!(repo.cat_file(&oid.to_hex()), item.data, "content of {oid}");
        }
    }
}

fn big_text(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("setting_{i} = value number {i} for the service\n"))
        .collect()
}

#[test]
fn new_file_with_secret_is_refused_in_gits_own_words() {
    let repo = Repo::new();
    repo.write("README.md", b"hello\n");
    repo.write(
        "config/prod.env",
        format!("AWS_ACCESS_KEY_ID={}\n", secret()).as_bytes(),
    );
    let head = repo.commit_all("add config");
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(&repo, &server, &["main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let short = &head[..7];
    assert!(!out.status.success(), "push must fail: {stderr}");
    assert!(
        stderr.contains(&format!(
            "remote: [gate] push blocked: 1 secret (aws-access-key) in config/prod.env of {short}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("! [remote rejected] main -> main (blocked by gate: 1 secret)"),
        "{stderr}"
    );

    let rp = parse(&server.last_push());
    assert_eq!(rp.commands().len(), 1);
    assert_eq!(rp.commands()[0].name, "refs/heads/main");
    assert_eq!(rp.commands()[0].new.to_hex(), head);
    assert!(rp.capabilities().report_status());
    let hits = items_with_secret(&rp);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, ItemKind::Blob);
    assert_eq!(hits[0].path.as_deref(), Some("config/prod.env"));
    assert_eq!(hits[0].commit.map(|c| c.to_hex()), Some(head.clone()));
    assert!(
        rp.items
            .iter()
            .any(|i| i.kind == ItemKind::TreeNames && i.path.as_deref() == Some("config"))
    );
    assert_objects_match_git(&repo, &rp);
    // nothing reached the server
    let on_server = common::git(&repo.bare, repo.home())
        .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
        .output()
        .expect("git");
    assert!(
        !on_server.status.success(),
        "the ref must not exist on the server"
    );
}

#[test]
fn push_without_side_band_still_names_the_secret_in_the_ref_line() {
    let repo = Repo::new();
    repo.write("config/prod.env", format!("KEY={}\n", secret()).as_bytes());
    let head = repo.commit_all("add config");
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    // the server cannot be asked to drop side-band, so check the builder with git's own parse
    let _ = push(&repo, &server, &["main"]);
    let mut req = parse_push_request(&server.last_push()).expect("commands");
    req.capabilities.0.retain(|c| !c.starts_with("side-band"));
    let f = vec![Finding {
        rule: "aws-access-key".into(),
        path: "config/prod.env".into(),
        commit: head[..7].into(),
    }];
    let r = refusal_response(
        &req,
        &Refusal {
            findings: &f,
            reason: None,
        },
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains(&format!(
        "ng refs/heads/main [gate] push blocked: 1 secret (aws-access-key) in config/prod.env of {}",
        &head[..7]
    )));
}

#[test]
fn edit_of_existing_file_in_one_push_is_rebuilt_from_ofs_delta() {
    let repo = Repo::new();
    let base = big_text(400);
    repo.write("config/prod.env", base.as_bytes());
    repo.commit_all("big config");
    let edited = base.replace(
        "setting_200 = value number 200",
        &format!("aws_key = {}", secret()),
    );
    repo.write("config/prod.env", edited.as_bytes());
    let head = repo.commit_all("edit config");
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(&repo, &server, &["main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("in config/prod.env of {}", &head[..7])),
        "{stderr}"
    );

    let rp = parse(&server.last_push());
    assert!(
        rp.stats.ofs_deltas >= 1,
        "git should delta the two versions: {:?}",
        rp.stats
    );
    assert_eq!(rp.stats.thin_deltas, 0);
    let blobs: Vec<_> = rp
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Blob)
        .collect();
    assert_eq!(blobs.len(), 2, "both versions are rebuilt");
    assert!(blobs.iter().any(|b| b.data == base.as_bytes()));
    let hit = blobs
        .iter()
        .find(|b| b.data == edited.as_bytes())
        .expect("edited version");
    assert_eq!(hit.commit.map(|c| c.to_hex()), Some(head.clone()));
    assert_objects_match_git(&repo, &rp);
}

#[test]
fn thin_pack_edit_hands_out_the_inserted_bytes() {
    let repo = Repo::new();
    let base = big_text(400);
    repo.write("config/prod.env", base.as_bytes());
    repo.commit_all("big config");
    {
        let forward = Server::start(&repo.bare, repo.home(), Mode::Forward);
        let out = push(&repo, &forward, &["main"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // a clean push parses and carries no finding
        assert!(findings(&parse(&forward.last_push())).is_empty());
    }
    let edited = base.replace(
        "setting_200 = value number 200",
        &format!("aws_key = {}", secret()),
    );
    repo.write("config/prod.env", edited.as_bytes());
    repo.commit_all("edit config");
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(&repo, &server, &["main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "remote: [gate] push blocked: 1 secret (aws-access-key) in an edit of object"
        ),
        "{stderr}"
    );

    let rp = parse(&server.last_push());
    assert!(rp.stats.thin_deltas >= 1, "{:?}", rp.stats);
    let hits = items_with_secret(&rp);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, ItemKind::DeltaInsert);
    let old_blob = repo.run(&["rev-parse", "HEAD~1:config/prod.env"]);
    assert_eq!(hits[0].delta_base.map(|o| o.to_hex()), Some(old_blob));
    // only the new bytes are handed out, not the whole file
    assert!(hits[0].data.len() < 200, "{}", hits[0].data.len());
}

#[test]
fn secret_in_a_commit_message_is_an_item() {
    let repo = Repo::new();
    repo.write("a.txt", b"a\n");
    let head = repo.commit_all(&format!("deploy with {}", secret()));
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(&repo, &server, &["main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("in commit message of {}", &head[..7])),
        "{stderr}"
    );
    let rp = parse(&server.last_push());
    let hits = items_with_secret(&rp);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, ItemKind::Commit);
    assert_eq!(hits[0].oid.map(|o| o.to_hex()), Some(head));
}

#[test]
fn secret_in_an_annotated_tag_is_an_item() {
    let repo = Repo::new();
    repo.write("a.txt", b"a\n");
    let head = repo.commit_all("clean");
    repo.run(&[
        "tag",
        "-a",
        "v1",
        "-m",
        &format!("release key {}", secret()),
    ]);
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(&repo, &server, &["main", "v1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("in tag v1 of {}", &head[..7])),
        "{stderr}"
    );
    assert!(stderr.contains("! [remote rejected] v1 -> v1"), "{stderr}");
    let rp = parse(&server.last_push());
    assert_eq!(rp.commands().len(), 2);
    let hits = items_with_secret(&rp);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, ItemKind::Tag);
    assert_eq!(hits[0].tag.as_deref(), Some("v1"));
    assert_eq!(hits[0].commit.map(|c| c.to_hex()), Some(head));
    assert_objects_match_git(&repo, &rp);
}

#[test]
fn push_options_are_items() {
    let repo = Repo::new();
    repo.bare_run(&["config", "receive.advertisePushOptions", "true"]);
    repo.write("a.txt", b"a\n");
    repo.commit_all("clean");
    let server = Server::start(&repo.bare, repo.home(), refuse_mode());
    let out = push(
        &repo,
        &server,
        &["-o", &format!("ci.variable=KEY={}", secret()), "main"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("in push option"), "{stderr}");
    let rp = parse(&server.last_push());
    assert_eq!(items_with_secret(&rp)[0].kind, ItemKind::PushOption);
}

#[test]
fn malformed_pack_is_refused_through_git_with_a_reason() {
    let repo = Repo::new();
    repo.write("a.txt", b"a\n");
    repo.commit_all("clean");
    // a receiver that flips one byte of the pack before parsing, as a corrupted push would be
    let mode = Mode::Answer(Box::new(|body: &[u8]| {
        let mut body = body.to_vec();
        let n = body.len();
        body[n - 30] ^= 0x40;
        let req = parse_push_request(&body).expect("commands survive");
        let err = parse_receive_pack(&body, &Limits::default()).expect_err("corrupt pack");
        let reason = err.to_string();
        let r = refusal_response(
            &req,
            &Refusal {
                findings: &[],
                reason: Some(&reason),
            },
        );
        (r.status, r.content_type.to_owned(), r.body)
    }));
    let server = Server::start(&repo.bare, repo.home(), mode);
    let out = push(&repo, &server, &["main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("remote: [gate] push blocked: pack checksum mismatch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("! [remote rejected] main -> main (blocked by gate)"),
        "{stderr}"
    );
}

fn small_body() -> (Repo, Vec<u8>) {
    let repo = Repo::new();
    repo.write("src/lib.rs", big_text(50).as_bytes());
    repo.write("config/prod.env", b"A=1\n");
    let c1 = repo.commit_all("one");
    repo.write("src/lib.rs", big_text(60).as_bytes());
    let c2 = repo.commit_all("two");
    repo.run(&["tag", "-a", "v1", "-m", "tag"]);
    let tag = repo.run(&["rev-parse", "v1"]);
    let zero = Oid::ZERO.to_hex();
    let body = repo.push_body(
        &[
            (&zero, &c2, "refs/heads/main"),
            (&zero, &tag, "refs/tags/v1"),
        ],
        "",
        &["--all", "--delta-base-offset"],
    );
    let _ = c1;
    (repo, body)
}

fn pack_offset(body: &[u8]) -> usize {
    parse_push_request(body).expect("commands").pack_offset
}

fn fix_trailer(body: &mut [u8]) {
    let start = pack_offset(body);
    let end = body.len() - 20;
    let sum: [u8; 20] = Sha1::digest(&body[start..end]).into();
    body[end..].copy_from_slice(&sum);
}

#[test]
fn every_object_type_and_pack_v3() {
    let (repo, body) = small_body();
    let rp = parse(&body);
    assert_eq!(rp.stats.version, Some(2));
    for kind in [
        ItemKind::Blob,
        ItemKind::Commit,
        ItemKind::Tag,
        ItemKind::TreeNames,
    ] {
        assert!(rp.items.iter().any(|i| i.kind == kind), "{kind:?}");
    }
    assert!(rp.stats.ofs_deltas >= 1, "{:?}", rp.stats);
    assert_objects_match_git(&repo, &rp);
    // the same pack labelled version 3 parses the same
    let mut v3 = body.clone();
    let at = pack_offset(&v3) + 7;
    v3[at] = 3;
    fix_trailer(&mut v3);
    let rp3 = parse(&v3);
    assert_eq!(rp3.stats.version, Some(3));
    assert_eq!(rp3.items, rp.items);
    // and REF_DELTA (no --delta-base-offset) too
    let head = repo.run(&["rev-parse", "main"]);
    let zero = Oid::ZERO.to_hex();
    let ref_body = repo.push_body(&[(&zero, &head, "refs/heads/main")], "", &["--all"]);
    let rpr = parse(&ref_body);
    assert!(rpr.stats.ref_deltas >= 1, "{:?}", rpr.stats);
    assert_eq!(rpr.stats.thin_deltas, 0);
    assert_objects_match_git(&repo, &rpr);
}

#[test]
fn truncated_packs_are_rejected() {
    let (_repo, body) = small_body();
    let start = pack_offset(&body);
    for cut in start + 1..body.len() {
        let r = parse_receive_pack(&body[..cut], &Limits::default());
        assert!(r.is_err(), "truncated at {cut} of {} parsed", body.len());
    }
    // with a recomputed trailer, truncation is caught by the object count or zlib
    for cut in (start + 32..body.len() - 1).step_by(7) {
        if cut == body.len() - 20 {
            continue; // that is the whole pack, not a truncation
        }
        let mut t = body[..cut].to_vec();
        t.extend_from_slice(&[0; 20]);
        fix_trailer(&mut t);
        assert!(
            parse_receive_pack(&t, &Limits::default()).is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn bit_flipped_packs_are_rejected() {
    let (_repo, body) = small_body();
    let start = pack_offset(&body);
    for at in start..body.len() {
        let mut b = body.clone();
        b[at] ^= 0x10;
        let r = parse_receive_pack(&b, &Limits::default());
        assert!(r.is_err(), "flip at {at} parsed");
    }
    // with the trailer fixed, flips must never panic, and the checksum error gives a reason
    let mut b = body.clone();
    b[start + 20] ^= 1;
    let err = parse_receive_pack(&b, &Limits::default()).expect_err("bad sum");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let mut rejected = 0;
    for at in start..body.len() - 20 {
        let mut b = body.clone();
        b[at] ^= 0x04;
        fix_trailer(&mut b);
        if parse_receive_pack(&b, &Limits::default()).is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected > (body.len() - start - 20) / 2,
        "most flips must be caught: {rejected}"
    );
}

#[test]
fn wrong_header_count_and_trailing_bytes_are_rejected() {
    let (_repo, body) = small_body();
    let start = pack_offset(&body);
    let mut b = body.clone();
    b[start + 11] += 1;
    fix_trailer(&mut b);
    assert!(matches!(
        parse_receive_pack(&b, &Limits::default()),
        Err(PackError::Count(_))
    ));
    let mut b = body.clone();
    b[start + 7] = 4;
    fix_trailer(&mut b);
    assert!(matches!(
        parse_receive_pack(&b, &Limits::default()),
        Err(PackError::PackHeader(_))
    ));
    let mut b = body.clone();
    b[start] = b'X';
    fix_trailer(&mut b);
    assert!(matches!(
        parse_receive_pack(&b, &Limits::default()),
        Err(PackError::PackHeader(_))
    ));
    let mut b = body[..body.len() - 20].to_vec();
    b.extend_from_slice(b"junk");
    b.extend_from_slice(&[0; 20]);
    fix_trailer(&mut b);
    assert!(matches!(
        parse_receive_pack(&b, &Limits::default()),
        Err(PackError::Count(_))
    ));
}

#[test]
fn limits_are_enforced() {
    let (_repo, body) = small_body();
    let lim = |f: fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        parse_receive_pack(&body, &l)
    };
    assert!(matches!(
        lim(|l| l.max_object_bytes = 1000),
        Err(PackError::ObjectTooLarge { .. })
    ));
    assert!(matches!(
        lim(|l| l.max_objects = 3),
        Err(PackError::TooManyObjects { .. })
    ));
    assert!(matches!(
        lim(|l| l.max_total_bytes = 2000),
        Err(PackError::TotalTooLarge { .. })
    ));
    assert!(matches!(
        lim(|l| l.max_delta_depth = 0),
        Err(PackError::DeltaTooDeep { .. })
    ));
    assert!(matches!(
        lim(|l| l.max_pack_bytes = 100),
        Err(PackError::BodyTooLarge { .. })
    ));
    assert!(lim(|_| {}).is_ok());
    let err = lim(|l| l.max_object_bytes = 1000).expect_err("over");
    assert!(
        err.to_string().contains("over the limit of 1000 bytes"),
        "{err}"
    );
}

#[test]
fn blob_is_credited_to_the_earliest_pushed_commit_and_file_names_are_items() {
    let repo = Repo::new();
    repo.write("config/prod.env", format!("KEY={}\n", secret()).as_bytes());
    let first = repo.commit_all("one");
    repo.write("b.txt", b"b\n");
    repo.write(&format!("notes/{}.txt", secret()), b"x\n");
    let second = repo.commit_all("two");
    let zero = Oid::ZERO.to_hex();
    let body = repo.push_body(&[(&zero, &second, "refs/heads/main")], "main\n", &[]);
    let rp = parse(&body);
    let hits = items_with_secret(&rp);
    assert_eq!(hits.len(), 2, "{hits:?}");
    let blob = hits
        .iter()
        .find(|i| i.kind == ItemKind::Blob)
        .expect("blob");
    assert_eq!(
        blob.commit.map(|c| c.to_hex()),
        Some(first),
        "reached by both commits, added by the first"
    );
    let names = hits
        .iter()
        .find(|i| i.kind == ItemKind::TreeNames)
        .expect("tree names");
    assert_eq!(names.location(), "file names in notes");
    assert_eq!(names.commit.map(|c| c.to_hex()), Some(second));
}

#[test]
fn probe_request_parses_as_empty() {
    // git sends a bare flush to probe the server before streaming a large push
    let rp = parse(b"0000");
    assert!(rp.commands().is_empty());
    assert!(rp.items.is_empty());
}

#[test]
fn delete_only_push_has_no_pack() {
    let body = format!(
        "{:04x}{} {} refs/heads/gone\0report-status0000",
        4 + 40 + 1 + 40 + 1 + 15 + 1 + 13,
        "1".repeat(40),
        Oid::ZERO
    );
    let rp = parse(body.as_bytes());
    assert!(rp.commands()[0].is_delete());
    assert!(rp.items.is_empty());
    assert_eq!(rp.stats.version, None);
}

#[test]
fn large_clean_repository_parses() {
    let repo = Repo::new();
    // ~50 MiB of source in 1600 files, then 10 commits editing 30 files each
    let tip = generate_history(&repo, 1600, 32 * 1024, 10, 30);
    let zero = Oid::ZERO.to_hex();
    let body = repo.push_body(
        &[(&zero, &tip, "refs/heads/main")],
        "main\n",
        &["--delta-base-offset"],
    );
    let rp = parse(&body);
    assert!(findings(&rp).is_empty());
    let blobs = rp.items.iter().filter(|i| i.kind == ItemKind::Blob).count();
    let expected: usize = repo
        .run(&["rev-list", "--objects", "--all"])
        .lines()
        .count();
    assert_eq!(rp.stats.objects, expected);
    assert!(blobs >= 1600);
    let total: usize = rp
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Blob)
        .map(|i| i.data.len())
        .sum();
    assert!(total > 50 * 1024 * 1024, "{total}");
    assert!(
        rp.items
            .iter()
            .filter(|i| i.kind == ItemKind::Blob)
            .all(|i| i.path.is_some() && i.commit.is_some())
    );
}

/// Writes real push bodies as seeds for the fuzz target:
/// `cargo test -p gate-pack --test receive_pack write_fuzz_seeds -- --ignored`
#[test]
#[ignore = "writes the fuzz corpus seeds; run by hand"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/receive_pack");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (repo, ofs) = small_body();
    std::fs::write(dir.join("seed-ofs-delta-tag"), &ofs).expect("write");
    let head = repo.run(&["rev-parse", "main"]);
    let prev = repo.run(&["rev-parse", "main~1"]);
    let zero = Oid::ZERO.to_hex();
    let refd = repo.push_body(&[(&zero, &head, "refs/heads/main")], "", &["--all"]);
    std::fs::write(dir.join("seed-ref-delta"), &refd).expect("write");
    let thin = repo.push_body(
        &[(&prev, &head, "refs/heads/main")],
        &format!("{head}\n^{prev}\n"),
        &["--thin"],
    );
    assert!(parse(&thin).stats.thin_deltas >= 1);
    std::fs::write(dir.join("seed-thin"), &thin).expect("write");
    let delete = format!(
        "{:04x}{} {} refs/heads/gone\0report-status0000",
        4 + 40 + 1 + 40 + 1 + 15 + 1 + 13,
        "1".repeat(40),
        Oid::ZERO
    );
    std::fs::write(dir.join("seed-delete"), delete).expect("write");
}
