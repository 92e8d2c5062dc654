//! Windows enforcement: WFP filters (or netsh advfirewall rules) scoped to the child.
