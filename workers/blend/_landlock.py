"""Landlock filesystem allow-list for sandboxed bpy children (Linux >= 5.13, unprivileged).

Defence in depth behind the path policy (`paths.py`): even if some datablock kind slipped past the
checks, the child cannot open files outside the Python install, the repo's `workers/` code, the
bundle and its own job directory. Where the kernel lacks Landlock, `restrict` says so (`Applied.ok`
False) and the caller decides: a child that must be isolated (`Limits.require_isolation`, the agent's
renders) refuses to go on; see sandbox.enter_child_sandbox.

$BLEND_SANDBOX_NO_LANDLOCK=1 makes this module behave as on a kernel without Landlock (tests, diagnosis).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE
SIMULATE_UNAVAILABLE_ENV = "BLEND_SANDBOX_NO_LANDLOCK"


@dataclass(frozen=True)
class Applied:
    """Outcome of `restrict`: `ok` only when the rules are in force for this process."""

    ok: bool
    detail: str

    def __str__(self) -> str:
        return self.detail


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """Landlock ABI version, 0 when unavailable."""
    if os.environ.get(SIMULATE_UNAVAILABLE_ENV):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    res = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(res))


def restrict(*, read: Iterable[str], write: Iterable[str], list_only: Iterable[str] = ()) -> Applied:
    """Restrict this process (and its future threads/children) to the given paths."""
    abi = abi_version()
    if abi < 1:
        return Applied(False, "unavailable (kernel without Landlock, or blocked by a seccomp profile)")
    libc = ctypes.CDLL(None, use_errno=True)
    handled = (1 << 13) - 1
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    attr = _RulesetAttr(handled)
    fd = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if fd < 0:
        return Applied(False, f"unavailable (create_ruleset errno {ctypes.get_errno()})")
    try:
        read_rights = EXECUTE | READ_FILE | READ_DIR
        write_rights = handled
        for paths, rights in ((list_only, READ_DIR), (read, read_rights), (write, write_rights)):
            for path in paths:
                _add_rule(libc, fd, path, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return Applied(False, f"not applied (no_new_privs errno {ctypes.get_errno()})")
        if libc.syscall(_SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)) != 0:
            return Applied(False, f"not applied (restrict_self errno {ctypes.get_errno()})")
    finally:
        os.close(fd)
    return Applied(True, f"enabled (ABI {abi})")


def _add_rule(libc: ctypes.CDLL, ruleset_fd: int, path: str, rights: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS  # directory rights on a file rule are EINVAL
        if not rights:
            return
        rule = _PathBeneathAttr(rights, pfd)
        if libc.syscall(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            log.warning("event=landlock_rule_failed", extra={"path": path, "errno": ctypes.get_errno()})
    finally:
        os.close(pfd)
