"""OCI bundle → running process: namespaces, rootfs, mounts, cgroups, capabilities, seccomp. Knows
nothing of images or HTTP.
"""
