"""Run a command where this Python is readable by every user, as user mode needs (tests of user mode only).

A Python under a private folder (pyenv under /root, mode 700) cannot be run by the unprivileged uids of user
mode. ``command_prefix()`` runs the command in a private mount namespace that lays a tmpfs over that folder and
lets through only the Python's own tree, so nothing else of the private folder becomes visible, and nothing
changes outside the namespace. Needs root and unshare; an empty prefix where the Python is already readable.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

_SCRIPT = r"""set -e
private=$1; child=$2; shift 2
stash=$(mktemp -d)
mount --bind "$private" "$stash"
mount -t tmpfs -o mode=755,size=1m tmpfs "$private"
mkdir -p "$private/$child"
mount --bind "$stash/$child" "$private/$child"
umount "$stash"; rmdir "$stash"
exec "$@"
"""


def command_prefix() -> list[str]:
    """The argv prefix; skips the calling test where user mode cannot be tried here."""
    if os.geteuid() != 0 or not all(map(shutil.which, ("setpriv", "unshare", "mount"))):
        pytest.skip("user mode needs root, setpriv and unshare")
    prefix = Path(sys.base_prefix).resolve()
    private = next((p for p in reversed(prefix.parents) if not os.stat(p).st_mode & 0o001), None)
    if private is None:
        return []
    return ["unshare", "-m", "sh", "-c", _SCRIPT, "sh", str(private), prefix.relative_to(private).parts[0]]
