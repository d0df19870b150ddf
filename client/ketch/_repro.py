"""Reproducibility facts captured when a run starts, and seeding.

:func:`collect_source` records where the code came from (git commit, branch, dirty flag,
remote, entry point, arguments); :func:`collect_environment` records what it ran on
(Python, platform, installed packages, GPUs). Both are best effort: they never raise and
leave anything they cannot find empty. :func:`set_seed` seeds the random number
generators of ``random``, numpy and torch.

This module uses only the standard library. numpy, torch and pynvml are imported lazily,
only where documented, and only when installed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import operator
import os
import platform
import random
import re
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "EnvironmentInfo",
    "GpuInfo",
    "SourceInfo",
    "collect_environment",
    "collect_source",
    "set_seed",
]

GIT_TIMEOUT_S = 2.0
"""Limit for each git command run by :func:`collect_source`, in seconds."""

INTERACTIVE_ENTRY_POINT = "<interactive>"
"""Entry point recorded for ``python -c``, stdin and the interactive interpreter."""

MAX_SEED = 2**32 - 1

# The seed most recently passed to set_seed in this process; collect_environment reports it.
_last_seed: int | None = None


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Where the running code came from.

    Attributes:
        git_commit: Full SHA of ``HEAD``; empty outside a git work tree or before the
            first commit.
        git_branch: Short name of the checked-out branch; empty when ``HEAD`` is detached
            or outside a git work tree.
        git_dirty: True when ``git status --porcelain`` lists anything: changes to tracked
            files (staged or not) or untracked files that are not ignored.
        git_remote: URL of the ``origin`` remote with any credentials removed; empty when
            there is none.
        entry_point: ``sys.argv[0]`` relative to the git work tree root when it lies inside
            it, else as given; ``"<interactive>"`` for ``-c``, stdin and the REPL.
        argv: ``sys.argv[1:]``.
    """

    git_commit: str = ""
    git_branch: str = ""
    git_dirty: bool = False
    git_remote: str = ""
    entry_point: str = ""
    argv: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """One GPU.

    Attributes:
        name: Product name, such as ``"NVIDIA H100 80GB HBM3"``.
        memory_total_bytes: Total device memory in bytes; 0 when unknown.
        uuid: Device UUID as NVML reports it (``"GPU-..."``); empty when unknown.
    """

    name: str
    memory_total_bytes: int = 0
    uuid: str = ""


@dataclasses.dataclass(frozen=True)
class EnvironmentInfo:
    """What the code runs on.

    Attributes:
        python_version: ``platform.python_version()``, such as ``"3.11.9"``.
        platform: ``platform.platform()``.
        hostname: ``socket.gethostname()``.
        cpu_count: ``os.cpu_count()``; 0 when unknown.
        packages: Installed distributions as ``"name==version"`` lines, one per
            distribution, sorted case-insensitively.
        gpus: GPUs visible to the process.
        gpu_driver_version: NVIDIA driver version, such as ``"550.54.15"``; empty when
            unknown.
        cuda_version: CUDA version, such as ``"12.4"``: the one the driver supports
            when read through NVML, else the one torch was built with.
        seed: The seed last passed to :func:`set_seed` in this process, if any.
    """

    python_version: str = ""
    platform: str = ""
    hostname: str = ""
    cpu_count: int = 0
    packages: tuple[str, ...] = ()
    gpus: tuple[GpuInfo, ...] = ()
    gpu_driver_version: str = ""
    cuda_version: str = ""
    seed: int | None = None


# --------------------------------------------------------------------------- source


def collect_source(cwd: str | None = None) -> SourceInfo:
    """Describe the source of the running program.

    Runs a few read-only git commands in ``cwd`` (default: the current directory), each
    limited to two seconds. Outside a git work tree, when git is not installed, or when a
    command fails or times out, the corresponding git fields are left empty (or False).

    Args:
        cwd: Directory whose git repository describes the code.

    Returns:
        The source description. ``entry_point`` and ``argv`` are taken from ``sys.argv``.

    This function never raises.
    """
    try:
        return _collect_source(cwd)
    except Exception:  # best effort: capturing facts must never break a run
        try:
            return SourceInfo(entry_point=_entry_point(None), argv=_argv())
        except Exception:
            return SourceInfo()


def _collect_source(cwd: str | None) -> SourceInfo:
    root = _git(cwd, "rev-parse", "--show-toplevel")
    if root is None:
        return SourceInfo(entry_point=_entry_point(None), argv=_argv())
    commit = _git(cwd, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") or ""
    branch = _git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD") or ""
    status = _git(cwd, "status", "--porcelain", "--untracked-files=normal", strip=False)
    remote = _git(cwd, "remote", "get-url", "origin") or ""
    return SourceInfo(
        git_commit=commit,
        git_branch=branch,
        git_dirty=bool(status and status.strip()),
        git_remote=_strip_credentials(remote),
        entry_point=_entry_point(root),
        argv=_argv(),
    )


def _git(cwd: str | None, *args: str, strip: bool = True) -> str | None:
    """Output of ``git *args`` in ``cwd``, or None when it fails, times out or is missing."""
    env = dict(os.environ)
    env.update(
        GIT_OPTIONAL_LOCKS="0",  # `git status` must not take index.lock from the user
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    out = proc.stdout.decode("utf-8", errors="replace")
    return out.strip() if strip else out


def _strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part.

    For ssh URLs a bare user name (``ssh://git@host/...``) is kept since it is not a
    secret; for other schemes any user info is removed, since tokens are often passed as
    the user name. scp-like ``git@host:path`` addresses cannot hold a password and are
    returned unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    if parts.scheme.lower() in ("ssh", "git+ssh", "ssh+git") and user and not has_password:
        return url
    return urlunsplit(parts._replace(netloc=hostport))


def _entry_point(root: str | None) -> str:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 in ("", "-", "-c"):
        return INTERACTIVE_ENTRY_POINT
    if root is None:
        return argv0
    try:
        path = os.path.realpath(os.path.abspath(argv0))
        top = os.path.realpath(root)
        if os.path.commonpath([path, top]) == top:
            return os.path.relpath(path, top).replace(os.sep, "/")
    except (OSError, ValueError):
        pass
    return argv0


def _argv() -> tuple[str, ...]:
    return tuple(str(a) for a in sys.argv[1:])


# ---------------------------------------------------------------------- environment


def collect_environment() -> EnvironmentInfo:
    """Describe the interpreter, machine, installed packages and GPUs.

    Packages are read from ``importlib.metadata`` (pip is not run). GPUs are read
    through NVML when ``pynvml`` (package ``nvidia-ml-py``) is installed; otherwise,
    when torch is already imported and has initialised CUDA, from ``torch.cuda``. torch
    is never imported and CUDA is never initialised by this function.

    Returns:
        The environment description; fields that cannot be determined are left empty.
        ``seed`` is the seed last passed to :func:`set_seed`, or None.

    This function never raises.
    """
    python_version = _safe(platform.python_version, "")
    plat = _safe(platform.platform, "")
    hostname = _safe(socket.gethostname, "")
    cpu_count = _safe(os.cpu_count, 0) or 0
    packages = _safe(_packages, ())
    gpus, driver, cuda = _safe(_nvml_gpus, None) or _safe(_torch_gpus, None) or ((), "", "")
    return EnvironmentInfo(
        python_version=python_version,
        platform=plat,
        hostname=hostname,
        cpu_count=cpu_count,
        packages=packages,
        gpus=gpus,
        gpu_driver_version=driver,
        cuda_version=cuda,
        seed=_last_seed,
    )


def _safe(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


_NORMALIZE = re.compile(r"[-_.]+")


def _packages() -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            meta = dist.metadata  # parsed on each access: read it once
            name = meta["Name"]
            version = meta["Version"]
        except Exception:
            continue
        if not name or not version:
            continue
        key = _NORMALIZE.sub("-", name).lower()
        # The first one found on sys.path is the one that imports, as in metadata.version().
        seen.setdefault(key, f"{name}=={version}")
    return tuple(sorted(seen.values(), key=lambda line: (line.lower(), line)))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _nvml_gpus() -> tuple[tuple[GpuInfo, ...], str, str] | None:
    """GPUs, driver version and CUDA driver version from NVML, or None without NVML."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = _text(pynvml.nvmlDeviceGetName(handle))
            except Exception:
                continue
            memory = _safe(lambda h=handle: int(pynvml.nvmlDeviceGetMemoryInfo(h).total), 0)
            uuid = _safe(lambda h=handle: _text(pynvml.nvmlDeviceGetUUID(h)), "")
            gpus.append(GpuInfo(name=name, memory_total_bytes=memory, uuid=uuid))
        driver = _safe(lambda: _text(pynvml.nvmlSystemGetDriverVersion()), "")
        cuda = _safe(lambda: _cuda_version(pynvml.nvmlSystemGetCudaDriverVersion()), "")
        return tuple(gpus), driver, cuda
    finally:
        _safe(pynvml.nvmlShutdown, None)


def _cuda_version(value: int) -> str:
    """NVML's integer CUDA version (12040) as ``"12.4"``."""
    value = int(value)
    if value <= 0:
        return ""
    return f"{value // 1000}.{value % 1000 // 10}"


def _torch_gpus() -> tuple[tuple[GpuInfo, ...], str, str] | None:
    """GPUs from an already imported torch, or None when torch is not imported.

    Device properties are read only when torch has already initialised CUDA, since
    initialising it creates a CUDA context (GPU memory) and breaks later ``fork``.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = _safe(lambda: str(torch.version.cuda or ""), "")
    gpus = []
    if _safe(torch.cuda.is_initialized, False):
        for index in range(torch.cuda.device_count()):
            try:
                props = torch.cuda.get_device_properties(index)
            except Exception:
                continue
            uuid = _safe(lambda p=props: str(p.uuid), "")
            if uuid and not uuid.startswith("GPU-"):
                uuid = f"GPU-{uuid}"
            gpus.append(
                GpuInfo(
                    name=str(props.name),
                    memory_total_bytes=int(getattr(props, "total_memory", 0) or 0),
                    uuid=uuid,
                )
            )
    return tuple(gpus), "", cuda


# -------------------------------------------------------------------------- seeding


def set_seed(seed: int, *, deterministic: bool = True) -> int:
    """Seed the random number generators of Python, numpy and torch.

    Seeds :mod:`random`; ``numpy.random`` (the legacy global generator) when numpy is
    installed; and, when torch is installed, ``torch.manual_seed`` and
    ``torch.cuda.manual_seed_all`` (deferred by torch until CUDA is initialised, so this
    does not initialise CUDA). numpy and torch are imported if they are not yet, since
    importing torch later would reset its generator.

    Also sets ``os.environ["PYTHONHASHSEED"]``; this affects only subprocesses started
    afterwards, not the hash randomisation of the running interpreter.

    With ``deterministic``, also sets ``torch.backends.cudnn.deterministic = True``,
    ``torch.backends.cudnn.benchmark = False``,
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` and, unless already set,
    ``os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"`` (which cuBLAS reads when CUDA is
    initialised, so call this before using the GPU).

    Args:
        seed: Integer in ``[0, 2**32 - 1]``. numpy integers are accepted; bool is not.
        deterministic: Also request deterministic algorithms from torch and cuBLAS.

    Returns:
        The seed, as an int.

    Raises:
        ValueError: ``seed`` is not an integer in ``[0, 2**32 - 1]``. Nothing else: a
            library that fails to import or to seed is skipped.
    """
    global _last_seed
    seed = _check_seed(seed)
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    try:
        import numpy

        numpy.random.seed(seed)
    except Exception:
        pass

    try:
        import torch  # type: ignore[import-not-found]
    except Exception:
        torch = None
    if torch is not None:
        _safe(lambda: torch.manual_seed(seed), None)
        _safe(lambda: torch.cuda.manual_seed_all(seed), None)
        if deterministic:
            _torch_deterministic(torch)

    _last_seed = seed
    return seed


def _check_seed(seed: Any) -> int:
    problem = f"seed must be an integer in [0, 2**32 - 1], got {seed!r}"
    if isinstance(seed, bool) or type(seed).__name__ in ("bool_", "bool"):
        raise ValueError(problem)
    try:
        value = operator.index(seed)
    except TypeError:
        raise ValueError(problem) from None
    if not 0 <= value <= MAX_SEED:
        raise ValueError(problem)
    return int(value)


def _torch_deterministic(torch: Any) -> None:
    try:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    except Exception:
        pass
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
    except TypeError:  # torch < 1.11 has no warn_only; strict mode could break training
        pass
    except Exception:
        pass
