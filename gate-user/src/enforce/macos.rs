//! macOS enforcement: the child runs under sandbox-exec with a generated profile.
