//! Firewall rule generators (iptables, nftables, pf, netsh): pure text, never applied.
