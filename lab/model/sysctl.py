"""Which sysctl keys a lab may set: those each network namespace has for its own.

The embedded lab applies a VM's /etc/sysctl.conf with `ip netns exec`, which changes the
network namespace only: /proc/sys/kernel, vm, fs, ... stay the host's, and so do the net keys
the kernel keeps global. Those exist only in the host's namespace or are read-only in the
others (measured on Linux 6.18 by listing /proc/sys/net in a fresh namespace; the kernel
makes a global key read-only there by design). tests/test_sysctl.py measures it again on
the machine that runs the tests, writing only inside namespaces it owns.
"""

from __future__ import annotations

# /proc/sys/net/<subtree> in a fresh namespace: the subtrees a lab may write to.
SUBTREES = frozenset({"bridge", "core", "ipv4", "ipv6", "mptcp", "netfilter", "unix"})

# net.core keys of each namespace's own (the rest of net.core is the host's).
CORE = frozenset({
    "optmem_max", "rps_default_mask", "somaxconn", "tstamp_allow_data", "txrehash",
    "xfrm_acq_expires", "xfrm_aevent_etime", "xfrm_aevent_rseqth", "xfrm_larval_drop",
})

# net.ipv4.route keys of each namespace's own (the rest: the host's route cache and limits).
ROUTE = frozenset({"flush", "min_adv_mss", "min_pmtu", "mtu_expires"})

# Global keys under the namespaced subtrees: absent from a fresh namespace, or read-only there.
HOST = frozenset({
    "net.ipv4.cipso_cache_bucket_size", "net.ipv4.cipso_cache_enable",
    "net.ipv4.cipso_rbm_optfmt", "net.ipv4.cipso_rbm_strictvalid", "net.ipv4.fib_sync_mem",
    "net.ipv4.inet_peer_maxttl", "net.ipv4.inet_peer_minttl", "net.ipv4.inet_peer_threshold",
    "net.ipv4.ipfrag_secret_interval", "net.ipv4.tcp_allowed_congestion_control",
    "net.ipv4.tcp_available_congestion_control", "net.ipv4.tcp_available_ulp",
    "net.ipv4.tcp_ehash_entries", "net.ipv4.tcp_low_latency", "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem", "net.ipv4.udp_hash_entries", "net.ipv4.udp_mem",
    "net.ipv6.calipso_cache_bucket_size", "net.ipv6.calipso_cache_enable",
    "net.ipv6.ip6frag_secret_interval", "net.ipv6.mld_max_msf", "net.ipv6.mld_qrv",
    "net.mptcp.available_path_managers", "net.mptcp.available_schedulers",
    "net.netfilter.nf_conntrack_buckets", "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_expect_max", "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_log_all_netns",
})


def host_only(key: str) -> str | None:
    """Why a net.* key is not the namespace's own, or None if it is."""
    parts = key.split(".")
    if parts[0] != "net" or len(parts) < 3:
        return "only network keys (net.<subtree>.<name>) are a namespace's own"
    if parts[1] not in SUBTREES:
        return f"net.{parts[1]} is not one of {', '.join(sorted(SUBTREES))}"
    if parts[1] == "core" and (len(parts) != 3 or parts[2] not in CORE):
        return "this net.core key is the host's"
    if parts[1:3] == ["ipv4", "route"] and (len(parts) != 4 or parts[3] not in ROUTE):
        return "this net.ipv4.route key is the host's"
    if len(parts) > 3 and parts[2] == "neigh" and parts[3] == "default":
        return "the neighbour tables' defaults are the host's (set them per interface)"
    if key in HOST:
        return "the kernel keeps this key for the host only"
    return None
