//! Generated benchmark inputs: realistic LLM request bodies (Anthropic and OpenAI chat JSON full
//! of code, tool calls and file contents), a keyword-dense adversarial body, and synthetic known
//! values. Deterministic, so gate and secretgate scan the very same bytes.
#![allow(
    dead_code,
    reason = "shared by the bench and the example; each uses a part"
)]

use serde_json::json;

/// Source text that agents send around: this crate's own code and rule files' prose.
const CODE: &[&str] = &[
    include_str!("../src/engine.rs"),
    include_str!("../src/known_values.rs"),
    include_str!("../src/stream.rs"),
    include_str!("../src/rules.rs"),
    include_str!("../src/cache.rs"),
    include_str!("../src/encode.rs"),
];

const PROSE: &str = "I looked at the failing test. The scanner builds its keyword prefilter once, \
then confirms candidates with a regex limited to a window around each keyword hit. The bug is \
an off-by-one in the window end: when the keyword sits at the very end of the buffer the window \
is clamped but the merge step compares against the unclamped value. I will fix it and add a \
regression test that splits the body at every offset.";

#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    Anthropic,
    OpenAi,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn slice<'a>(&mut self, text: &'a str, max: usize) -> &'a str {
        let start = (self.next() as usize) % text.len();
        let mut s = start;
        while !text.is_char_boundary(s) {
            s -= 1;
        }
        let mut e = (s + max).min(text.len());
        while !text.is_char_boundary(e) {
            e -= 1;
        }
        &text[s..e]
    }
}

/// A chat request body of about `target` bytes.
pub fn llm_body(target: usize, flavor: Flavor) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut messages = Vec::new();
    let mut size = 0;
    let mut turn = 0;
    while size < target {
        let source = rng_pick_code(&mut rng);
        let code = rng.slice(source, 6000);
        let path = format!("gate-scan/src/file_{turn}.rs");
        let (user, assistant) = match flavor {
            Flavor::Anthropic => (
                json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": format!("toolu_{turn:08}"),
                     "content": format!("{path}\n```rust\n{code}\n```")},
                    {"type": "text", "text": format!("Turn {turn}: please review {path}. {PROSE}")}
                ]}),
                json!({"role": "assistant", "content": [
                    {"type": "text", "text": PROSE},
                    {"type": "tool_use", "id": format!("toolu_{:08}", turn + 1), "name": "str_replace_based_edit_tool",
                     "input": {"command": "view", "path": path, "view_range": [1, 120 + turn]}}
                ]}),
            ),
            Flavor::OpenAi => (
                json!({"role": "tool", "tool_call_id": format!("call_{turn:08}"),
                       "content": format!("{path}\n```rust\n{code}\n```")}),
                json!({"role": "assistant", "content": PROSE, "tool_calls": [
                    {"id": format!("call_{:08}", turn + 1), "type": "function",
                     "function": {"name": "read_file", "arguments": json!({"path": path}).to_string()}}
                ]}),
            ),
        };
        size += user.to_string().len() + assistant.to_string().len();
        messages.push(user);
        messages.push(assistant);
        turn += 1;
    }
    let body = match flavor {
        Flavor::Anthropic => json!({
            "model": "claude-sonnet-4-5", "max_tokens": 8192, "stream": true,
            "system": [{"type": "text", "text": "You are a careful coding agent working in a Rust workspace."}],
            "messages": messages,
        }),
        Flavor::OpenAi => json!({
            "model": "gpt-4.1", "stream": true,
            "messages": messages,
        }),
    };
    body.to_string().into_bytes()
}

fn rng_pick_code(rng: &mut Rng) -> &'static str {
    rng.pick(CODE)
}

/// A body with "key", "token", "secret" or "password" (in assignment shape) every 100 bytes.
pub fn adversarial(target: usize) -> Vec<u8> {
    let words = ["api_key", "auth_token", "client_secret", "password"];
    let mut out = Vec::with_capacity(target + 100);
    let mut i = 0u64;
    while out.len() < target {
        let w = words[(i % 4) as usize];
        let mut seg =
            format!("{{\"{w}\": \"value-{i:08}\", \"note\": \"key token secret password {i}\"}} ");
        while seg.len() < 100 {
            seg.push('.');
        }
        seg.truncate(100);
        out.extend_from_slice(seg.as_bytes());
        i += 1;
    }
    out
}

/// A line of an env file whose name is `SECRET_` over and over, about `target` bytes long:
/// a keyword hit every 7 bytes, every one of them in the same line.
pub fn env_name_run(target: usize) -> Vec<u8> {
    let mut out = b"\n".to_vec();
    while out.len() + 30 < target {
        out.extend_from_slice(b"SECRET_");
    }
    out.extend_from_slice(b"=Zq8vR3mK9pLw2xT7synthQ\n");
    out
}

/// `n` synthetic secret values, as (variable name, value).
pub fn known_values(n: usize) -> Vec<(String, String)> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|i| {
            let v: String = (0..32)
                .map(|_| A[(rng.next() % A.len() as u64) as usize] as char)
                .collect();
            (format!("BENCH_SERVICE_{i}_TOKEN"), v)
        })
        .collect()
}
