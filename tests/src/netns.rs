//! Test hosts: network namespaces joined to the host by veth pairs, made and removed by tests.
