//! `gate-ws-client`: the agent for the tests that open a WebSocket under `gate run` (no
//! WebSocket client ships on the test machines). It dials the `wss://` URL it is given straight
//! (HTTPS_PROXY is ignored, so under kernel enforcement the connection takes the transparent
//! path) and trusts the CA bundle in SSL_CERT_FILE, as `gate run` sets it.
//!
//! Each line of stdin is sent as one text message and its echo awaited. Stdout gets one line per
//! thing received: `text <payload>`, `binary <length>`, `close <code> <reason>`, or `end` when
//! the connection ended without a Close. At the end of stdin it sends a Close (1000) and waits
//! for the answer. Exit status 0 when every message got a text reply and the closing handshake
//! completed, 1 otherwise.
use std::path::Path;
use std::process::ExitCode;

use gate_tests::ws::{self, CloseFrame, Message, Opened};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What came back, printed as one line.
enum Got {
    Text,
    Close,
    Other,
}

/// Prints the next message that is not a ping or pong.
async fn next(c: &mut ws::Client) -> Got {
    for _ in 0..64 {
        match c.recv().await {
            Some(Message::Text(t)) => {
                println!("text {}", t.as_str());
                return Got::Text;
            }
            Some(Message::Binary(b)) => {
                println!("binary {}", b.len());
                return Got::Other;
            }
            Some(Message::Close(f)) => {
                match f {
                    Some(f) => println!("close {} {}", u16::from(f.code), f.reason.as_str()),
                    None => println!("close none"),
                }
                return Got::Close;
            }
            None => {
                println!("end");
                return Got::Other;
            }
            Some(_) => continue,
        }
    }
    println!("end: 64 control frames and no message");
    Got::Other
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: gate-ws-client wss://HOST:PORT/PATH < messages");
        return ExitCode::from(2);
    };
    let Some(rest) = url.strip_prefix("wss://") else {
        eprintln!("gate-ws-client: {url} is not a wss:// URL");
        return ExitCode::from(2);
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let Some(ca) = std::env::var_os("SSL_CERT_FILE") else {
        eprintln!("gate-ws-client: SSL_CERT_FILE is not set");
        return ExitCode::from(2);
    };
    let tls = ws::tls_direct(authority, Path::new(&ca)).await;
    let mut c = match ws::open_on(tls, authority, &path, "websocket", &[]).await {
        Opened::Upgraded(_, c) => *c,
        Opened::Refused(head, _) => {
            println!("refused {}", head.lines().next().unwrap_or_default());
            return ExitCode::FAILURE;
        }
    };
    for line in std::io::stdin().lines() {
        let line = line.expect("reading stdin");
        c.text(&line).await;
        if !matches!(next(&mut c).await, Got::Text) {
            return ExitCode::FAILURE;
        }
    }
    c.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await;
    match next(&mut c).await {
        Got::Close => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
