"""Child of `sandbox.check_isolation`: apply the render allow-list, then try to read a file outside it.

Run: python -m workers.blend.isolation_check <path outside the allow-list>. No bpy: starts in ~0.1 s.
"""

from __future__ import annotations

from typing import Any

from workers.blend import sandbox


def _child(argv: list[str]) -> dict[str, Any]:
    applied = sandbox.child_isolation()  # what child_main's enter_child_sandbox got
    try:
        with open(argv[0], "rb") as f:
            f.read(1)
        read_outside = True
    except OSError:
        read_outside = False
    return {
        "applied": bool(applied and applied.ok),
        "detail": applied.detail if applied else "off",
        "read_outside": read_outside,
    }


if __name__ == "__main__":
    sandbox.child_main(_child)
