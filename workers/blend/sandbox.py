"""Run bpy code in a locked-down subprocess.

Uploaded scenes are untrusted, so Blender never runs in the caller's process: every bpy job is
`python -m workers.blend.<module>` with rlimits (memory, CPU, open files, file size, no core dumps), a
wall-clock timeout that kills the whole process group, a scrubbed environment (no inherited secrets),
its own empty working/home/temp directory and, where the kernel supports Landlock, a filesystem
allow-list (see `_landlock.py`). A child started with `Limits(require_isolation=True)` (the agent's
renders of strangers' scenes) refuses to run when the allow-list cannot be applied: SandboxUnavailable.
`check_isolation()` tells whether it can be (the agent's start-up and `doctor`).

The child reports through a JSON file named by $BLEND_SANDBOX_RESULT, never through stdout: Blender
prints its own chatter there (to `sandbox.log` in the job directory). The child's own log records go to a file
of their own (one JSON object a line, on the descriptor named by $BLEND_SANDBOX_LOG_FD), which the parent reads
after each job or answer and logs as its own lines (`ChildOutput`): in the parent's format, with the ids it has
bound (the lease being rendered).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_ENV = "BLEND_SANDBOX_RESULT"
FS_ENV = "BLEND_SANDBOX_FS"
RECORDS_FD_ENV = "BLEND_SANDBOX_LOG_FD"
LOG_NAME = "sandbox.log"  # Blender's stdout and stderr
RECORDS_NAME = "records.jsonl"  # the child's log records
OUTPUT_LIMIT = 4000  # characters of Blender's output kept for an error or a debug line (the last ones)
# Environment variables that may pass through: device selection only, never credentials.
PASSTHROUGH_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "ONEAPI_DEVICE_SELECTOR",
    "LD_LIBRARY_PATH",
    "BLEND_SANDBOX_NO_LANDLOCK",
)
MEMORY_HINTS = (
    "memoryerror",
    "bad_alloc",
    "cannot allocate memory",
    "out of memory",
    "failed to map segment",
    "failed to allocate",
    "std::length_error",
)


class BlendError(Exception):
    """Base class of every error this package raises about a scene or a bpy job."""


class BlendFileError(BlendError, ValueError):
    """The input is not a usable .blend (not a Blender file, truncated, unsupported, refused)."""

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class RenderRefused(BlendFileError):
    """The scene references files outside its bundle (or other forbidden inputs); nothing was rendered."""

    @property
    def offences(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("offences", []))


class DeviceError(BlendError, RuntimeError):
    """The requested render device (CUDA, OPTIX, HIP, ONEAPI) is not available in this Blender/driver."""


class SandboxError(BlendError, RuntimeError):
    """The bpy subprocess hit a limit (timeout, memory, CPU, file size) or crashed."""

    def __init__(self, reason: str, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason  # short code: timeout | memory | cpu | file_size | crash | protocol | sandbox
        self.message = message
        self.log_tail = log_tail


class SandboxUnavailable(SandboxError):
    """The filesystem allow-list could not be applied and this job requires it: nothing was opened."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__("sandbox", message, log_tail=log_tail)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed bpy process.

    `address_space=True` caps RLIMIT_AS. GPU drivers (CUDA, HIP) reserve tens of GiB of virtual
    address space they never touch, so GPU jobs cap RLIMIT_DATA (private writable memory) instead.
    """

    timeout_s: float = 60.0
    memory_mb: int = 2048
    cpu_s: float | None = None  # None: timeout_s x cores (+ margin); the wall timeout is what binds
    cpu_hard_s: float | None = None  # hard CPU cap; None = same as cpu_s (the child cannot raise it)
    max_file_mb: int = 2048
    max_open_files: int = 1024
    threads: int = 0  # 0: all cores
    address_space: bool = True
    filesystem_isolation: bool = True
    # Refuse to run (SandboxUnavailable) rather than go on without the Landlock allow-list.
    require_isolation: bool = False
    # Persistent, writable directory for the GPU driver's compiled-kernel caches (OptiX/CUDA JIT);
    # without it every fresh render child would recompile OptiX kernels (minutes).
    gpu_kernel_cache: Path | None = None
    # The interpreter of the Blender series' runtime (workers.runtimes); None: the agent's own, with its bpy.
    python: Path | None = None

    def effective_cpu_s(self) -> int:
        if self.cpu_s is not None:
            return max(1, int(self.cpu_s))
        return int(self.timeout_s * (os.cpu_count() or 1)) + 10


@dataclass
class JobResult:
    result: Any
    peak_rss_mb: float
    seconds: float
    job_dir: Path | None = None
    log_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def python_exe() -> str:
    return sys.executable


def build_env(job_dir: Path, *, threads: int = 0, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: nothing of the caller's (API tokens, cloud keys) leaks into Blender."""
    n = str(threads if threads > 0 else (os.cpu_count() or 1))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONNOUSERSITE": "1",
        "PYTHONSAFEPATH": "1",  # never put the cwd on sys.path
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(job_dir),
        "TMPDIR": str(job_dir),
        "TMP": str(job_dir),
        "TEMP": str(job_dir),
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TBB_NUM_THREADS": n,
        # glibc reserves 64 MiB of address space per malloc arena (8 x cores of them): keep RLIMIT_AS honest.
        "MALLOC_ARENA_MAX": "4",
    }
    for name in PASSTHROUGH_ENV:
        if name in os.environ:
            env[name] = os.environ[name]
    if extra:
        env.update(extra)
    return env


def make_preexec(limits: Limits) -> Callable[[], None]:
    """rlimits applied between fork and exec; only plain syscalls here (safe after fork)."""
    mem = limits.memory_mb * 1024 * 1024
    cpu = limits.effective_cpu_s()
    cpu_hard = max(cpu, int(limits.cpu_hard_s)) if limits.cpu_hard_s is not None else cpu
    mem_kind = resource.RLIMIT_AS if limits.address_space else resource.RLIMIT_DATA
    fsize = limits.max_file_mb * 1024 * 1024
    nofile = limits.max_open_files

    def preexec() -> None:
        os.umask(0o077)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(mem_kind, (mem, mem))
        # soft < hard: SIGXCPU (clean kill) comes first, SIGKILL a few seconds later.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu_hard + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return preexec


def filesystem_policy(*, job_dir: Path, read_paths: Iterable[Path] = (), limits: Limits) -> dict[str, Any]:
    """What the child may read and write once Landlock is on (ignored where the kernel lacks it)."""
    if not limits.filesystem_isolation:
        return {"enabled": False}
    exe = Path(sys.executable)
    reads = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(exe.parent),
        str(exe.resolve().parent.parent),
        str(REPO_ROOT / "workers"),
        str(REPO_ROOT / "tests" / "fixtures"),
        "/usr",
        "/lib",
        "/lib64",
        "/bin",
        "/opt/rocm",
        "/sys",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/localtime",
        "/etc/alternatives",
        "/etc/OpenCL",
        "/etc/vulkan",
        "/etc/glvnd",
        "/etc/nvidia",
        "/etc/fonts",
    }
    # Not all of /proc: /proc/<agent pid>/environ holds the agent's credentials. "/proc/self" is opened
    # (and so resolved to the child's own pid) by the child when it applies the rules.
    proc = [
        "/proc/self",
        "/proc/cpuinfo",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/sys",
        "/proc/driver",
        "/proc/filesystems",
        "/proc/mounts",
    ]
    devices = [
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
        "/dev/fd",
        "/dev/shm",
        "/dev/dri",
        "/dev/kfd",
        *glob.glob("/dev/nvidia*"),
    ]
    # Python needs to list the repo root to find the `workers` package (not to read its files).
    dirs_only = {str(REPO_ROOT), str(REPO_ROOT / "tests")}
    reads.update(str(p) for p in read_paths)
    if limits.python is not None:
        # A runtime venv (its bpy) and the Python it was built on (its stdlib), e.g. a pyenv 3.13.
        reads.update({str(limits.python.parent.parent), str(limits.python.resolve().parent.parent)})
    # GPU drivers open their device nodes read-write.
    writes = {str(job_dir), "/dev/null", "/dev/shm", "/dev/dri", "/dev/kfd", *glob.glob("/dev/nvidia*")}
    if limits.gpu_kernel_cache is not None:
        writes.add(str(limits.gpu_kernel_cache))
    for p in list(reads):
        with contextlib.suppress(OSError):
            reads.add(os.path.realpath(p))
    reads = {p for p in reads if os.path.exists(p)}
    reads.update(p for p in proc + devices if os.path.exists(p))
    return {
        "enabled": True,
        "required": limits.require_isolation,
        "read": sorted(reads),
        "list": sorted(p for p in dirs_only if os.path.exists(p)),
        "write": sorted(p for p in writes if os.path.exists(p)),
    }


def default_gpu_kernel_cache() -> Path:
    """Where GPU render children keep compiled kernels: $RENDER_GPU_KERNEL_CACHE or ~/.cache/render-agent."""
    configured = os.environ.get("RENDER_GPU_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "render-agent" / "gpu-kernels"


def new_job_dir(prefix: str = "blend-job-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def read_log_tail(job_dir: Path, limit: int = OUTPUT_LIMIT) -> str:
    try:
        data = (job_dir / LOG_NAME).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def explain_exit(status: int, *, limits: Limits, log_tail: str, timed_out: bool) -> SandboxError:
    """Turn a dead child into a SandboxError whose reason says which limit (if any) it hit."""
    if timed_out:
        return SandboxError(
            "timeout",
            f"bpy job exceeded its {limits.timeout_s:g} s wall-clock limit and was killed",
            log_tail=log_tail,
        )
    lowered = log_tail.lower()
    mem_hint = any(h in lowered for h in MEMORY_HINTS)
    if status < 0:
        sig = -status
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return SandboxError(
                "cpu",
                f"bpy job exceeded its CPU time limit ({limits.effective_cpu_s()} s)",
                log_tail=log_tail,
            )
        if sig == signal.SIGXFSZ:
            return SandboxError(
                "file_size", f"bpy job tried to write a file over {limits.max_file_mb} MB", log_tail=log_tail
            )
        if mem_hint or sig == signal.SIGKILL:
            return SandboxError(
                "memory",
                f"bpy job ran out of memory (limit {limits.memory_mb} MB, killed by {name})",
                log_tail=log_tail,
            )
        hint = ""
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            # Code that does not check malloc() also dies like this at the memory limit.
            hint = f" (if the scene is large, it may have hit the {limits.memory_mb} MB memory limit)"
        return SandboxError("crash", f"bpy job crashed with signal {name}{hint}", log_tail=log_tail)
    if mem_hint:
        return SandboxError("memory", f"bpy job ran out of memory (limit {limits.memory_mb} MB)", log_tail=log_tail)
    last = log_tail.strip().splitlines()[-1] if log_tail.strip() else "no output"
    return SandboxError("crash", f"bpy job exited with status {status} without a result ({last})", log_tail=log_tail)


def kill_group(pid: int) -> None:
    """SIGKILL a child started in its own session, with its helpers; a child already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def spawn(
    module: str,
    args: Sequence[str],
    *,
    job_dir: Path,
    limits: Limits,
    read_paths: Iterable[Path] = (),
    extra_env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    stdin: Any = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `python -m workers.blend.<module>` (or a dotted module path) in the sandbox.

    The child's stdout and stderr go to a log file in the job directory (Blender prints a lot there).
    """
    if "." not in module:
        module = f"workers.blend.{module}"
    extra = dict(extra_env or {})
    if limits.gpu_kernel_cache is not None:
        limits.gpu_kernel_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra.setdefault("OPTIX_CACHE_PATH", str(limits.gpu_kernel_cache / "optix"))
        extra.setdefault("CUDA_CACHE_PATH", str(limits.gpu_kernel_cache / "cuda"))
    logf = open(job_dir / LOG_NAME, "ab")
    records = open(job_dir / RECORDS_NAME, "ab")
    extra[RECORDS_FD_ENV] = str(records.fileno())
    env = build_env(job_dir, threads=limits.threads, extra=extra)
    env[FS_ENV] = json.dumps(filesystem_policy(job_dir=job_dir, read_paths=read_paths, limits=limits))
    try:
        return subprocess.Popen(
            [str(limits.python or python_exe()), "-m", module, *args],
            cwd=job_dir,
            env=env,
            stdin=stdin,
            stdout=logf,
            stderr=subprocess.STDOUT,
            # Only umask/setrlimit run between fork and exec (no imports, no locks taken).
            preexec_fn=make_preexec(limits),  # noqa: PLW1509
            start_new_session=True,  # own process group: a timeout kills Blender's helpers too
            close_fds=True,
            pass_fds=(*pass_fds, records.fileno()),
        )
    finally:
        logf.close()
        records.close()


def wait_child(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, float]:
    """Wait with a deadline; return (exit status or None on timeout, peak RSS in MB of that child)."""
    delay = 0.005
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024.0
        if time.monotonic() >= deadline:
            kill_group(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, usage.ru_maxrss / 1024.0
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def run_bpy_module(
    module: str,
    args: Sequence[str] = (),
    *,
    limits: Limits | None = None,
    read_paths: Iterable[Path] = (),
    job_dir: Path | None = None,
    keep_job_dir: bool = False,
) -> JobResult:
    """Run one bpy job to completion and return its JSON result.

    Raises BlendFileError when the child rejected its input, SandboxError on timeout, limits or crash.
    """
    limits = limits or Limits()
    own_dir = job_dir is None
    job_dir = new_job_dir() if job_dir is None else job_dir
    result_path = job_dir / "result.json"
    t0 = time.monotonic()
    try:
        proc = spawn(
            module,
            args,
            job_dir=job_dir,
            limits=limits,
            read_paths=read_paths,
            extra_env={RESULT_ENV: str(result_path)},
        )
        status, peak = wait_child(proc, t0 + limits.timeout_s)
        seconds = time.monotonic() - t0
        ChildOutput(job_dir).relay()
        tail = read_log_tail(job_dir)
        payload = None
        if status == 0 and result_path.exists():
            payload = json.loads(result_path.read_text())
        if payload is None:
            raise explain_exit(
                status if status is not None else -9, limits=limits, log_tail=tail, timed_out=status is None
            )
        raise_for_payload(payload, limits=limits, log_tail=tail)
        return JobResult(
            result=payload["result"],
            peak_rss_mb=peak,
            seconds=seconds,
            job_dir=job_dir if keep_job_dir else None,
            log_tail=tail,
        )
    finally:
        if own_dir and not keep_job_dir:
            shutil.rmtree(job_dir, ignore_errors=True)


def raise_for_payload(payload: Mapping[str, Any], *, limits: Limits, log_tail: str = "") -> None:
    """Re-raise, in the parent, an error the child caught and reported."""
    if payload.get("ok"):
        return
    kind = payload.get("error")
    message = payload.get("message", "unknown error")
    if kind == "refused":
        raise RenderRefused(message, data=payload.get("data"))
    if kind == "file":
        raise BlendFileError(message, data=payload.get("data"))
    if kind == "device":
        raise DeviceError(message)
    if kind == "sandbox":
        raise SandboxUnavailable(message, log_tail=log_tail)
    if kind == "memory":
        raise SandboxError("memory", f"{message} (limit {limits.memory_mb} MB)", log_tail=log_tail)
    raise SandboxError("crash", message, log_tail=log_tail + "\n" + payload.get("traceback", ""))


# The attributes every log record has: a record's other attributes are its `extra=` fields.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# What a child's record may not set: the line's own keys and the ids, which are the parent's to bind (a scene that
# broke out of Blender must not pass its lines off as another lease's).
_PARENT_FIELDS = frozenset({"event", "level", "logger", "timestamp", "exception", "frame", "lease_kind"})


class ChildOutput:
    """What a child wrote so far, read by its parent after a job or an answer (`relay`).

    The child's log records are logged here as this process's own lines: in its format (JSON or key=value), with
    the ids bound around the call (the lease a render is for). Blender's own output stays in `sandbox.log`: an
    error carries its tail (`log_tail`), and at DEBUG each relay logs what is new of it (its last OUTPUT_LIMIT
    bytes) as the `output` of one `blender_output` line.
    """

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self._records_at = 0
        self._output_at = 0

    def relay(self) -> None:
        try:
            with open(self.job_dir / RECORDS_NAME, "rb") as f:
                f.seek(self._records_at)
                data = f.read()
        except OSError:
            data = b""
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next relay
        self._records_at += len(whole)
        for line in whole.splitlines():
            _log_child_record(line)
        if log.isEnabledFor(logging.DEBUG):
            self._output_relay()

    def _output_relay(self) -> None:
        try:
            with open(self.job_dir / LOG_NAME, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                f.seek(max(self._output_at, end - OUTPUT_LIMIT))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return
        self._output_at = end
        if text.strip():
            log.debug("event=blender_output", extra={"output": text})


def _log_child_record(line: bytes) -> None:
    try:
        record = json.loads(line)
        name, level, message = str(record["logger"]), record["level"], str(record["message"])
        fields = {
            k: v
            for k, v in record["fields"].items()
            if k not in _RECORD_ATTRS and k not in _PARENT_FIELDS and not k.endswith("_id")
        }
        if isinstance(record.get("exception"), str):
            fields["exception"] = record["exception"]
    except (ValueError, KeyError, TypeError, AttributeError):
        name, level, message = "workers.blend.child", logging.WARNING, "event=child_record_unreadable"
        fields = {"record": line[:500].decode("utf-8", "replace")}
    if not name.startswith("workers.blend."):
        name = "workers.blend.child"
    if not isinstance(level, int) or not logging.DEBUG <= level <= logging.CRITICAL:
        level = logging.INFO
    logging.getLogger(name).log(level, message, extra=fields)


# ---------------------------------------------------------------- child side


class RecordWriter(logging.Formatter):
    """In a child: each record as one JSON object a line, for the parent to log as its own (`ChildOutput`)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "logger": record.name,
            "level": record.levelno,
            "message": record.getMessage(),
            "fields": {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS},
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def check_isolation(*, timeout_s: float = 30.0) -> dict[str, Any]:
    """Does the filesystem allow-list work on this machine? Tried for real, not inferred from the kernel.

    A child applies the allow-list a render child gets and tries to read a file outside it. Returns
    {"works": bool, "detail": str}: works only when the rules applied and the read was refused.
    """
    outside = Path(tempfile.mkdtemp(prefix="sandbox-check-"))
    try:
        secret = outside / "outside.txt"
        secret.write_text("must not be readable from the sandbox")
        try:
            job = run_bpy_module(
                "workers.blend.isolation_check",
                [str(secret)],
                limits=Limits(timeout_s=timeout_s, memory_mb=1024),
            )
        except SandboxError as exc:
            return {"works": False, "detail": f"the check child failed: {exc}"}
        out = job.result
        if not out["applied"]:
            return {"works": False, "detail": f"Landlock {out['detail']}"}
        if out["read_outside"]:
            return {"works": False, "detail": f"Landlock {out['detail']}, yet a file outside was readable"}
        return {"works": True, "detail": f"Landlock {out['detail']}"}
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, RenderRefused):
        return {"ok": False, "error": "refused", "message": exc.message, "data": exc.data}
    if isinstance(exc, BlendFileError):
        return {"ok": False, "error": "file", "message": exc.message, "data": exc.data}
    if isinstance(exc, DeviceError):
        return {"ok": False, "error": "device", "message": str(exc)}
    if isinstance(exc, SandboxUnavailable):
        return {"ok": False, "error": "sandbox", "message": exc.message}
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(h in text.lower() for h in MEMORY_HINTS):
        return {"ok": False, "error": "memory", "message": f"out of memory ({text})"}
    return {
        "ok": False,
        "error": "crash",
        "message": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(limit=8),
    }


_CHILD_STATE: dict[str, Any] = {}


def child_isolation() -> Any:
    """In a child: the `_landlock.Applied` outcome of enter_child_sandbox (None: policy off or not run)."""
    return _CHILD_STATE.get("isolation")


def enter_child_sandbox() -> Any:
    """First thing a child does: logging to its parent (run by hand: to stderr), then the filesystem allow-list.

    Returns the `_landlock.Applied` outcome (None when the policy is off). Raises SandboxUnavailable
    when the policy requires isolation and it could not be applied: the child must not go on.
    """
    records_fd = os.environ.get(RECORDS_FD_ENV)
    if records_fd:  # started by `spawn`
        handler = logging.StreamHandler(os.fdopen(int(records_fd), "w", buffering=1, encoding="utf-8"))
        handler.setFormatter(RecordWriter())
        logging.basicConfig(handlers=[handler], level=logging.DEBUG)  # the parent's level decides what shows
    else:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    policy = json.loads(os.environ.get(FS_ENV, "{}") or "{}")
    if not policy.get("enabled"):
        return None
    from workers.blend import _landlock

    applied = _CHILD_STATE["isolation"] = _landlock.restrict(
        read=policy.get("read", []), list_only=policy.get("list", []), write=policy.get("write", [])
    )
    log.debug("event=sandbox_isolation", extra={"applied": applied.ok, "detail": applied.detail})
    if not applied.ok and policy.get("required"):
        raise SandboxUnavailable(
            f"filesystem isolation is required for this job and could not be applied: {applied.detail}"
        )
    if not applied.ok:
        log.warning(
            "event=sandbox_unisolated: running without filesystem isolation, relying on the path policy",
            extra={"detail": applied.detail},
        )
    return applied


def child_main(fn: Callable[[list[str]], Any]) -> None:
    """Run a one-shot child job: result (or error) as JSON into $BLEND_SANDBOX_RESULT, then exit hard."""
    result_path = os.environ.get(RESULT_ENV)
    try:
        enter_child_sandbox()
        payload: dict[str, Any] = {"ok": True, "result": fn(sys.argv[1:])}
    except BaseException as exc:  # everything is reported to the parent
        payload = error_payload(exc)
    data = json.dumps(payload)
    if result_path:
        tmp = result_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, result_path)
    else:
        out = sys.__stdout__  # the pipe the parent reads, whatever sys.stdout was pointed at
        assert out is not None
        out.write(data + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip bpy's interpreter teardown: slow and not needed, the process is single-use.
    os._exit(0)
