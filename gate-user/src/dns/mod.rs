//! gate's DNS forwarder: every name the agent asks is resolved by gate, recorded, and checked.
