//! Linux enforcement: a cgroup per run with gate's eBPF programs attached.
