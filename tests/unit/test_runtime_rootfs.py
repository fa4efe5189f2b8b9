"""Pure parts of berth.runtime.rootfs: finding the mount a path is on from mountinfo."""

from berth.runtime.rootfs import parent_mount

MOUNTINFO = """\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:50 / /tmp rw,nosuid master:3 - tmpfs tmpfs rw
41 40 0:51 / /tmp/a\\040b rw shared:7 - tmpfs tmpfs rw
42 27 0:52 / /tmpfoo rw shared:9 - tmpfs tmpfs rw
43 40 0:53 / /tmp rw - tmpfs tmpfs rw
"""


def test_parent_mount_is_the_longest_mount_point_above_the_path():
    assert parent_mount("/srv/rootfs", MOUNTINFO) == ("/", True)
    # /tmp is mounted twice: the later mount is the one on top; a prefix that is not a
    # path component (/tmpfoo) does not count
    assert parent_mount("/tmp/x/rootfs", MOUNTINFO) == ("/tmp", False)
    assert parent_mount("/tmp/a b/rootfs", MOUNTINFO) == ("/tmp/a b", True)
    assert parent_mount("/tmp/a b", MOUNTINFO) == ("/tmp/a b", True)
    assert parent_mount("/tmpfoo", MOUNTINFO) == ("/tmpfoo", True)


def test_full_proc_and_sysfs_outside_the_rootfs():
    from berth.runtime.rootfs import full_proc_sys_mounts

    mi = MOUNTINFO + (
        "50 27 0:5 / /proc rw - proc proc rw\n"
        "51 27 0:6 / /sys rw - sysfs sysfs rw\n"
        "52 50 0:5 /sys /srv/x/proc/sys ro - proc proc rw\n"  # a part of one: not full
        "53 27 0:7 / /srv/rootfs/proc rw - proc proc rw\n"  # the container's own
        "54 27 0:8 / /srv/rootfs2/sys rw - sysfs sysfs rw\n")  # beside it, not inside
    assert full_proc_sys_mounts(mi, "/srv/rootfs") == ["/proc", "/sys", "/srv/rootfs2/sys"]
