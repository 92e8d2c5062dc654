//! Spots DNS names that carry data out (a tunnel or exfiltration encoding bytes as labels), so the
//! forwarder can refuse them before they reach a resolver. Tuned for zero false positives on real
//! long names (CDN, cloud load balancers, buckets, Kubernetes), so it catches the obvious cases:
//! long base32/base64/hex chunks, not every covert channel.

/// Why a name looks like exfiltration, in words a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Exfil {
    /// One label long and random-looking enough to be encoded data.
    HighEntropyLabel { len: usize, entropy: f64 },
    /// One long label made only of hex, or of base32/base64 letters mixed with digits.
    EncodedLabel { len: usize, alphabet: &'static str },
    /// Several data-looking labels that together carry a lot of bytes.
    ManyDataLabels { labels: usize, chars: usize },
}

impl std::fmt::Display for Exfil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exfil::HighEntropyLabel { len, entropy } => write!(
                f,
                "a {len}-character label with {entropy:.2} bits/char of entropy looks like encoded data"
            ),
            Exfil::EncodedLabel { len, alphabet } => {
                write!(
                    f,
                    "a {len}-character label looks like {alphabet}-encoded data"
                )
            }
            Exfil::ManyDataLabels { labels, chars } => write!(
                f,
                "{labels} random-looking labels ({chars} characters) look like encoded data"
            ),
        }
    }
}

/// A hyphen-free run at least this long is examined for entropy on its own.
const LONG_RUN: usize = 40;
/// Entropy (bits per character, case folded) above which a long run is data. Words and names
/// stay near 4.0; base32 and base64 chunks of 40+ characters score 4.4 and up.
const LONG_RUN_ENTROPY: f64 = 4.1;
/// A whole label (hyphens and all) this long and this random is data too: it catches base64url,
/// whose `-` splits runs. Long hyphenated names in use stay below 4.4.
const LONG_LABEL: usize = 50;
const LONG_LABEL_ENTROPY: f64 = 4.5;
/// A run at least this long made of an encoding's alphabet (hex, or letters mixed with digits) is
/// data whatever its entropy. Cloud names with hex ids (ELB, EKS, ACM) stay at 32-33 characters.
const ENCODED_RUN: usize = 48;
/// Runs at least this long with letters and digits (hex, or with some randomness) are data-like...
const DATA_RUN: usize = 16;
const DATA_RUN_ENTROPY: f64 = 3.3;
/// ...and this many characters of data-like runs in one name (two runs at least) is a tunnel.
const DATA_CHARS: usize = 60;

/// Shannon entropy in bits per character of `label`, ASCII case folded (DNS is case-insensitive,
/// and resolvers may randomise case).
pub fn entropy(label: &[u8]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in label {
        counts[usize::from(b.to_ascii_lowercase())] += 1;
    }
    let n = label.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn has_digit_and_letter(run: &[u8]) -> bool {
    run.iter().any(u8::is_ascii_digit) && run.iter().any(u8::is_ascii_alphabetic)
}

fn is_hex(run: &[u8]) -> bool {
    run.iter().all(u8::is_ascii_hexdigit)
}

/// Letters and digits only (base32, base64 without `+/-_`), both present.
fn is_alnum_mix(run: &[u8]) -> bool {
    run.iter().all(u8::is_ascii_alphanumeric) && has_digit_and_letter(run)
}

/// Whether the name (its labels, as on the wire) looks like it carries data out. Labels are split
/// into runs at `-`, the separator of words in names people make and never produced by base32
/// or hex encoders.
pub fn check(labels: &[Vec<u8>]) -> Option<Exfil> {
    let mut data_runs = 0;
    let mut data_chars = 0;
    for label in labels {
        if label.len() >= LONG_LABEL {
            let h = entropy(label);
            if h >= LONG_LABEL_ENTROPY {
                return Some(Exfil::HighEntropyLabel {
                    len: label.len(),
                    entropy: h,
                });
            }
        }
        for run in label.split(|&b| b == b'-') {
            let len = run.len();
            if len < DATA_RUN {
                continue;
            }
            let h = entropy(run);
            if len >= LONG_RUN && h >= LONG_RUN_ENTROPY {
                return Some(Exfil::HighEntropyLabel { len, entropy: h });
            }
            if len >= ENCODED_RUN {
                if is_hex(run) {
                    return Some(Exfil::EncodedLabel {
                        len,
                        alphabet: "hex",
                    });
                }
                if is_alnum_mix(run) {
                    return Some(Exfil::EncodedLabel {
                        len,
                        alphabet: "base32/base64",
                    });
                }
            }
            if has_digit_and_letter(run) && (is_hex(run) || h >= DATA_RUN_ENTROPY) {
                data_runs += 1;
                data_chars += len;
            }
        }
    }
    (data_runs >= 2 && data_chars >= DATA_CHARS).then_some(Exfil::ManyDataLabels {
        labels: data_runs,
        chars: data_chars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<Vec<u8>> {
        name.split('.').map(|l| l.as_bytes().to_vec()).collect()
    }

    /// Real-world shapes of long but benign names: none may be refused.
    const BENIGN: &[&str] = &[
        "github.com",
        "api.github.com",
        "raw.githubusercontent.com",
        "objects.githubusercontent.com",
        "avatars.githubusercontent.com",
        "user-images.githubusercontent.com",
        "release-assets.githubusercontent.com",
        "pipelines.actions.githubusercontent.com",
        "github-production-release-asset-2e65be.s3.amazonaws.com",
        "github-production-user-asset-6210df.s3.amazonaws.com",
        "d1234abcd5678ef.cloudfront.net",
        "d3kbcqa49mib13.cloudfront.net",
        "dkf2xq7lq0x3e.cloudfront.net",
        "my-company-build-artifacts-prod-us-east-1.s3.us-east-1.amazonaws.com",
        "my-bucket.s3.dualstack.eu-west-1.amazonaws.com",
        "terraform-state-123456789012-us-west-2.s3.us-west-2.amazonaws.com",
        "a4c2d3b2e1f04bd3a9f1e8b1c2d3e4f5-1234567890.us-west-2.elb.amazonaws.com",
        "ab12cd34ef56ab78cd90ef12ab34cd56-0123456789abcdef.elb.eu-central-1.amazonaws.com",
        "internal-my-application-load-balancer-1234567890.us-east-1.elb.amazonaws.com",
        "my-app-prod-alb-1234567890.eu-west-1.elb.amazonaws.com",
        "A1B2C3D4E5F60718293A4B5C6D7E8F90.gr7.us-west-2.eks.amazonaws.com",
        "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.s3.us-east-1.vpce.amazonaws.com",
        "abcdefghij.execute-api.us-east-1.amazonaws.com",
        "mydatabase-instance-1.c9akciq32xyz.us-east-1.rds.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com",
        "productionresultssa0.blob.core.windows.net",
        "mystorageaccount1234567.blob.core.windows.net",
        "myapp-prod-westeurope-abcdef1234567890.azurewebsites.net",
        "my-frontdoor-endpoint-a1b2c3d4e5f6g7h8.z01.azurefd.net",
        "e9f8d7c6-b5a4-3210-fedc-ba9876543210.eastus.azurecontainer.io",
        "5f3c2e1a-8b7d-4c6e-9a0f-1b2c3d4e5f60.privatelink.westus2.azmk8s.io",
        "my-aks-cluster-dns-0a1b2c3d.hcp.westeurope.azmk8s.io",
        "kube-dns.kube-system.svc.cluster.local",
        "my-very-long-service-name-for-the-payments-backend.production-namespace.svc.cluster.local",
        "my-deployment-name-7d9f8b6c5d-x2k4p.my-headless-service.default.svc.cluster.local",
        "prometheus-kube-prometheus-stack-prometheus-0.prometheus-operated.monitoring.svc.cluster.local",
        "ip-10-0-12-34.us-west-2.compute.internal",
        "ec2-54-123-45-67.us-west-2.compute.amazonaws.com",
        "_a79865eb4cd1a6ab990a45779b4e0b96.example.com",
        "_424c7224e9b0146f9a8808af955727d0.hkmpvcwbzw.acm-validations.aws",
        "_acme-challenge.www.example.com",
        "selector1-contoso-com._domainkey.contoso.onmicrosoft.com",
        "e12345.dscb.akamaiedge.net",
        "a1234.dscg.akamai.net",
        "www.googleapis.com",
        "storage.googleapis.com",
        "us-central1-my-project-123456.cloudfunctions.net",
        "my-project-id-default-rtdb.europe-west1.firebasedatabase.app",
        "registry-1.docker.io",
        "production.cloudflare.docker.com",
        "index.crates.io",
        "static.crates.io",
        "files.pythonhosted.org",
        "registry.npmjs.org",
        "proxy.golang.org",
        "sum.golang.org",
        "deb.debian.org",
        "security.debian.org",
        "api.anthropic.com",
        "api.openai.com",
        "statsig.anthropic.com",
        "o123456.ingest.sentry.io",
        "o4504123456789012.ingest.us.sentry.io",
        "browser-intake-datadoghq.com",
        "this-is-a-very-long-but-perfectly-ordinary-subdomain-name.example.org",
        "the-quick-brown-fox-jumps-over-the-lazy-dog-again-and-again.example.com",
        "xn--bcher-kva.example",
        "xn--mgbh0fb.xn--kgbechtv",
        "1.0.0.127.in-addr.arpa",
        "b.a.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "abcdef0123456789abcdef0123456789.gitpod.io",
        "3000-abcdef0123456789-abcdefgh.ws-eu107.gitpod.io",
        "bright-sun-1234.fly.dev",
        "my-feature-branch-abc123def-my-team.vercel.app",
        "deploy-preview-1234--my-site-name.netlify.app",
        "cdk-hnb659fds-assets-123456789012-us-east-1.s3.us-east-1.amazonaws.com",
        "elasticbeanstalk-us-east-1-123456789012.s3.amazonaws.com",
        "my-service-abcdefghij-uc.a.run.app",
        "34-120-50-1.bc.googleusercontent.com",
        "20240101t123456-dot-my-project-id.uc.r.appspot.com",
        "r3---sn-4g5e6nzz.gvt1.com",
        "lh3.googleusercontent.com",
        "westus2-0.in.applicationinsights.azure.com",
        "az764295.vo.msecnd.net",
        "copilot-proxy.githubusercontent.com",
        "5f3c2e1a-8b7d-4c6e-9a0f-1b2c3d4e5f60.cfargotunnel.com",
        "my-app-1234567890ab-abcdef123456.herokuapp.com",
        "my-project--pr42-feature-branch-x1y2z3w4.web.app",
        "1a2b-203-0-113-1.ngrok-free.app",
        "10-0-0-1.nip.io",
        "_xmpp-client._tcp.example.com",
        "2.0.0.127.zen.spamhaus.org",
        "7c4a8d09ca3762af61e59520943dc26494f8941b.hashbl.example.net",
        "d41d8cd98f00b204e9800998ecf8427e.malware.hash.cymru.com",
        "sha256-9f86d081884c7d659a2feaa0c55ad015.cdn.example.com",
    ];

    /// Names that carry data in their labels: every one must be refused.
    const EXFIL: &[&str] = &[
        // base32 of random bytes: one 63-character label
        "ojclrtj2s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4me5i.evil.test",
        // base32 of random bytes: one 45-character label and a sequence number
        "eki5rtodcbar47wcon4kmyojgumhyb7e2vrw5g6dyqale.17.evil.test",
        // hex of /etc/passwd text in one 60-character label (low entropy: ASCII nibbles)
        "726f6f743a783a303a303a726f6f743a2f726f6f743a2f62696e2f626173.x.evil.test",
        // hex of random bytes, 62 characters
        "7a3ebecc676aaa2c5d8ce1b3c6acbc5f1670a9821bc72985d7645e7dbb0778.evil.test",
        // base64 of an AWS key id and secret, case as sent
        "QUtJQUlPU0ZPRE5ON0VYQU1QTEUrd0phbHJYVXRuRkVNSS9LN01ERU5HLw.evil.test",
        // base64url of random bytes (its `-` and `_` included)
        "80rtBWrW6o7spBkvof653EsevlXluPm2gO_3bIHU6aswTUiW-eF_2PCBZJbaCA.evil.test",
        // base32 of an AWS secret key in two 32-character labels
        "o5fgc3dslbkxi3sgivgusl2lg5guirkoi.4xweudykjtgsq2zivmectkqjrcuwrkz.evil.test",
        // dnscat2-style: several hex labels of ASCII text
        "4a6f686e20446f6520737365.6e3a203132332d34352d3637.38392c20636172643a20343131.evil.test",
        // a PEM private key in hex, 32-character chunks
        "2d2d2d2d2d424547494e205253412050.524956415445204b45592d2d2d2d2d0a.4d4949456f77494241414b4341514541.evil.test",
        // base64 in many 20-character labels
        "c2VjcmV0X3Rva2VuX3Zh.bHVlXzEyMzQ1Njc4OTBh.YmNkZWZnaGlqa2xtbm9w.cXJzdHV2d3h5ejAxMjM0.evil.test",
    ];

    #[test]
    fn benign_names_pass() {
        for name in BENIGN {
            assert_eq!(check(&labels(name)), None, "false positive: {name}");
        }
    }

    #[test]
    fn exfil_names_are_caught() {
        for name in EXFIL {
            assert!(check(&labels(name)).is_some(), "missed: {name}");
        }
    }

    /// Each rule catches something the others miss.
    #[test]
    fn each_rule_earns_its_place() {
        let high = |n: &str| matches!(check(&labels(n)), Some(Exfil::HighEntropyLabel { .. }));
        // A 45-character base32 run.
        assert!(high(
            "eki5rtodcbar47wcon4kmyojgumhyb7e2vrw5g6dyqale.17.evil.test"
        ));
        // base64url whose `-` cut it into runs too short for the run rules: the whole label.
        assert!(high(
            "aB3dE7fG1hJ2kL9mN4pQ-rS6tU8vW1xY5zAe0Kq-bC7dE3fG9hJ2kL4mN6pQ8rS.evil.test"
        ));
        // Hex of text is low in entropy: caught by its alphabet and length.
        assert_eq!(
            check(&labels(
                "726f6f743a783a303a303a726f6f743a2f726f6f743a2f62696e2f626173.evil.test"
            )),
            Some(Exfil::EncodedLabel {
                len: 60,
                alphabet: "hex"
            })
        );
        // Short chunks spread over labels.
        assert!(matches!(
            check(&labels(
                "2d2d2d2d2d424547494e205253412050.524956415445204b45592d2d2d2d2d0a.evil.test"
            )),
            Some(Exfil::ManyDataLabels {
                labels: 2,
                chars: 64
            })
        ));
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b""), 0.0);
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(entropy(b"AbAb"), entropy(b"abab"));
    }

    #[test]
    fn reasons_read_well() {
        let e = check(&labels(EXFIL[0])).unwrap();
        assert!(e.to_string().contains("label"), "{e}");
    }
}
