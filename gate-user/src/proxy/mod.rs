//! The proxy: explicit and transparent front doors, TLS interception, upstream, streaming.
