"""What the grading child does to itself before the student's code runs: a new, empty session keyring, and a
seccomp filter (libseccomp, through ``pyseccomp``) that refuses what a grading never needs.

The filter refuses, in every mode: sockets other than AF_UNIX (no network, even where the host's is visible, as
in user mode on Gradescope), io_uring (which could open them without the socket call), the kernel keyrings,
ptrace and reading or writing other processes' memory, new namespaces, mounts and chroot, BPF and perf events.
Every other system call, and every other architecture's, is as libseccomp leaves it (other architectures: the
process is killed). Where the filter cannot be installed (no libseccomp, or a kernel without seccomp),
``confine`` says so and the results do not name those bounds.
"""
from __future__ import annotations

import ctypes
import errno
import platform
import socket

KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 280, "s390x": 280}  # keyctl(2)'s number
_JOIN_SESSION_KEYRING = 1
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
_REFUSED = ("keyctl", "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev", "unshare",
            "setns", "mount", "umount2", "pivot_root", "chroot", "bpf", "perf_event_open", "io_uring_setup",
            "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsmount", "kexec_load")


def new_session_keyring() -> str:
    """Leave whatever session keyring the grader was started with for a new, empty one; "" or why not."""
    number = KEYCTL.get(platform.machine())
    if number is None:
        return f"no keyctl number known for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(number), ctypes.c_long(_JOIN_SESSION_KEYRING), ctypes.c_void_p(None)) < 0:
        return f"keyctl refused ({errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())})"
    return ""


def install_filter() -> str:
    """Install the seccomp filter in this process (and all it starts); "" or why it could not be."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError, OSError) as error:  # RuntimeError: pyseccomp found no libseccomp
        return f"no libseccomp binding ({type(error).__name__}: {error})"
    try:
        rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        refuse = seccomp.ERRNO(errno.EPERM)
        for call in ("socket", "socketpair"):
            rules.add_rule(refuse, call, seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
        for call in _REFUSED:
            try:
                rules.add_rule(refuse, call)
            except (OSError, ValueError):
                pass  # a call this architecture does not have
        for flag in _flags(_CLONE_NEW):  # threads and forks stay allowed; clones into new namespaces do not
            rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags cannot be inspected: C libraries fall back
        rules.load()
    except OSError as error:
        return f"the kernel refused the filter ({error})"
    return ""


def _flags(mask: int) -> list[int]:
    return [1 << bit for bit in range(32) if mask >> bit & 1]


def check() -> dict[str, bool]:
    """Whether each bound holds in this process now: the network and the keyrings (for the mode's probe)."""
    held = {}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a route to it means a network
        held["network"] = False
    except OSError:
        held["network"] = True
    number = KEYCTL.get(platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3), without creating one: refused, or a keyring with no
    # keys (KEYCTL_READ, 11, returns the size of its list of key ids)
    if number is None:
        held["keyrings"] = False
    else:
        ring = libc.syscall(ctypes.c_long(number), ctypes.c_long(0), ctypes.c_long(-3), ctypes.c_long(0))
        size = -1 if ring < 0 else libc.syscall(ctypes.c_long(number), ctypes.c_long(11), ctypes.c_long(ring),
                                                 ctypes.c_void_p(None), ctypes.c_long(0))
        held["keyrings"] = ring < 0 or size == 0
    return held
