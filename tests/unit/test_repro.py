"""Tests for ketch._repro: source and environment capture, and seeding."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from ketch import _repro

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_IDENTITY = [
    "-c",
    "user.email=test@example.com",
    "-c",
    "user.name=Test",
    "-c",
    "commit.gpgsign=false",
]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch, tmp_path):
    """Keep the user's git environment and any enclosing repository out of the tests."""
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setattr(_repro, "_last_seed", None)


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "trunk")
    (path / "train.py").write_text("print('hi')\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    return path


# --------------------------------------------------------------------------- source


@needs_git
def test_source_commit_and_branch(repo):
    info = _repro.collect_source(cwd=str(repo))
    assert info.git_commit == git(repo, "rev-parse", "HEAD")
    assert len(info.git_commit) == 40
    assert info.git_branch == "trunk"
    assert info.git_dirty is False
    assert info.git_remote == ""


@needs_git
def test_source_from_subdirectory(repo):
    sub = repo / "pkg"
    sub.mkdir()
    info = _repro.collect_source(cwd=str(sub))
    assert info.git_commit == git(repo, "rev-parse", "HEAD")
    assert info.git_branch == "trunk"


@needs_git
def test_source_dirty_after_modifying_tracked_file(repo):
    (repo / "train.py").write_text("print('changed')\n")
    assert _repro.collect_source(cwd=str(repo)).git_dirty is True


@needs_git
def test_source_dirty_after_adding_untracked_file(repo):
    (repo / "notes.txt").write_text("new\n")
    assert _repro.collect_source(cwd=str(repo)).git_dirty is True


@needs_git
def test_source_clean_when_only_ignored_files_added(repo):
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore logs")
    (repo / "out.log").write_text("noise\n")
    assert _repro.collect_source(cwd=str(repo)).git_dirty is False


@needs_git
def test_source_detached_head_has_no_branch(repo):
    git(repo, "checkout", "-q", "--detach")
    info = _repro.collect_source(cwd=str(repo))
    assert info.git_branch == ""
    assert info.git_commit == git(repo, "rev-parse", "HEAD")


@needs_git
def test_source_repo_without_commits(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    git(path, "init", "-q", "-b", "trunk")
    info = _repro.collect_source(cwd=str(path))
    assert info.git_commit == ""
    assert info.git_branch == "trunk"


@needs_git
def test_source_remote_credentials_are_stripped(repo):
    git(repo, "remote", "add", "origin", "https://user:secret@example.com/x.git")
    info = _repro.collect_source(cwd=str(repo))
    assert info.git_remote == "https://example.com/x.git"
    assert "secret" not in repr(info)


@needs_git
def test_source_remote_without_credentials_is_kept(repo):
    git(repo, "remote", "add", "origin", "git@github.com:org/repo.git")
    assert _repro.collect_source(cwd=str(repo)).git_remote == "git@github.com:org/repo.git"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@example.com/x.git", "https://example.com/x.git"),
        ("https://ghp_token@github.com/org/x.git", "https://github.com/org/x.git"),
        ("https://user:p%40ss@example.com:8443/x.git", "https://example.com:8443/x.git"),
        ("http://example.com/x.git", "http://example.com/x.git"),
        ("ssh://git@example.com/x.git", "ssh://git@example.com/x.git"),
        ("ssh://git:secret@example.com/x.git", "ssh://example.com/x.git"),
        ("git@github.com:org/x.git", "git@github.com:org/x.git"),
        ("/srv/git/x.git", "/srv/git/x.git"),
    ],
)
def test_strip_credentials(url, expected):
    assert _repro._strip_credentials(url) == expected


@needs_git
def test_source_outside_repo_is_empty(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    info = _repro.collect_source(cwd=str(plain))
    assert (info.git_commit, info.git_branch, info.git_dirty, info.git_remote) == (
        "",
        "",
        False,
        "",
    )


def test_source_without_git_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable here
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.1"])
    info = _repro.collect_source(cwd=str(tmp_path))
    assert info == _repro.SourceInfo(entry_point="train.py", argv=("--lr", "0.1"))


def test_source_missing_cwd_does_not_raise(tmp_path):
    info = _repro.collect_source(cwd=str(tmp_path / "does-not-exist"))
    assert info.git_commit == ""


@needs_git
def test_entry_point_relative_to_repo_root(repo, monkeypatch):
    (repo / "src").mkdir()
    script = repo / "src" / "train.py"
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script), "--epochs", "3"])
    info = _repro.collect_source(cwd=str(repo))
    assert info.entry_point == "src/train.py"
    assert info.argv == ("--epochs", "3")


@needs_git
def test_entry_point_outside_repo_is_kept(repo, tmp_path, monkeypatch):
    script = tmp_path / "elsewhere.py"
    monkeypatch.setattr(sys, "argv", [str(script)])
    info = _repro.collect_source(cwd=str(repo))
    assert info.entry_point == str(script)
    assert info.argv == ()


@pytest.mark.parametrize("argv0", ["-c", "", "-"])
def test_entry_point_interactive(argv0, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0, "x"])
    info = _repro.collect_source(cwd=str(tmp_path))
    assert info.entry_point == "<interactive>"
    assert info.argv == ("x",)


def test_source_info_is_frozen():
    with pytest.raises(AttributeError):
        _repro.SourceInfo().git_commit = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------- environment


def test_environment_basics():
    env = _repro.collect_environment()
    assert env.python_version == platform.python_version()
    assert env.platform == platform.platform()
    assert env.cpu_count == os.cpu_count()
    assert env.hostname
    assert env.seed is None


def test_environment_packages():
    packages = _repro.collect_environment().packages
    assert f"pytest=={importlib.metadata.version('pytest')}" in packages
    assert list(packages) == sorted(packages, key=str.lower)
    names = [line.partition("==")[0].lower().replace("_", "-") for line in packages]
    assert len(names) == len(set(names))
    assert all("==" in line for line in packages)


def test_environment_does_not_import_torch():
    # In a fresh interpreter: other tests of this session import torch themselves.
    code = (
        "import sys; from ketch import _repro; _repro.collect_environment(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_environment_gpus_from_nvml(monkeypatch):
    handles = ["h0", "h1"]
    fake = types.ModuleType("pynvml")
    calls = []
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlShutdown = lambda: calls.append("shutdown")
    fake.nvmlDeviceGetCount = lambda: 2
    fake.nvmlDeviceGetHandleByIndex = lambda i: handles[i]
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA H100" if h == "h0" else "NVIDIA A10"
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30)
    fake.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"
    fake.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    fake.nvmlSystemGetCudaDriverVersion = lambda: 12040
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    env = _repro.collect_environment()
    assert env.gpus == (
        _repro.GpuInfo("NVIDIA H100", 80 * 2**30, "GPU-h0"),
        _repro.GpuInfo("NVIDIA A10", 80 * 2**30, "GPU-h1"),
    )
    assert env.gpu_driver_version == "550.54.15"
    assert env.cuda_version == "12.4"
    assert calls == ["init", "shutdown"]


def test_environment_nvml_init_failure_is_empty(monkeypatch):
    fake = types.ModuleType("pynvml")

    def fail():
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    env = _repro.collect_environment()
    assert (env.gpus, env.gpu_driver_version, env.cuda_version) == ((), "", "")


def fake_torch(initialized: bool) -> types.ModuleType:
    props = types.SimpleNamespace(name="NVIDIA L4", total_memory=24 * 2**30, uuid="abc-123")

    def get_device_properties(index):
        if not initialized:
            raise AssertionError("must not initialise CUDA")
        return props

    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(cuda="12.1")
    torch.cuda = types.SimpleNamespace(
        is_initialized=lambda: initialized,
        device_count=lambda: 1,
        get_device_properties=get_device_properties,
    )
    return torch


def test_environment_gpus_from_imported_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialized=True))
    env = _repro.collect_environment()
    assert env.gpus == (_repro.GpuInfo("NVIDIA L4", 24 * 2**30, "GPU-abc-123"),)
    assert env.cuda_version == "12.1"


def test_environment_torch_without_cuda_context_reads_no_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialized=False))
    env = _repro.collect_environment()
    assert env.gpus == ()
    assert env.cuda_version == "12.1"


# -------------------------------------------------------------------------- seeding


def test_set_seed_repeats_random(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    assert _repro.set_seed(1234) == 1234
    first = [random.random() for _ in range(5)]
    _repro.set_seed(1234)
    assert [random.random() for _ in range(5)] == first
    _repro.set_seed(1235)
    assert [random.random() for _ in range(5)] != first
    assert os.environ["PYTHONHASHSEED"] == "1235"


def test_set_seed_repeats_numpy():
    np = pytest.importorskip("numpy")
    _repro.set_seed(7)
    first = np.random.rand(5)
    _repro.set_seed(7)
    assert np.array_equal(np.random.rand(5), first)


def test_set_seed_accepts_numpy_integer():
    np = pytest.importorskip("numpy")
    result = _repro.set_seed(np.int64(5))
    assert result == 5
    assert type(result) is int


def test_set_seed_is_reported_in_environment():
    _repro.set_seed(99)
    assert _repro.collect_environment().seed == 99


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_set_seed_bounds(seed):
    assert _repro.set_seed(seed) == seed


@pytest.mark.parametrize("seed", [-1, 2**32, True, False, "3", 1.0, None])
def test_set_seed_rejects_invalid(seed):
    before = random.getstate()
    with pytest.raises(ValueError, match="seed"):
        _repro.set_seed(seed)  # type: ignore[arg-type]
    assert random.getstate() == before
    assert _repro._last_seed is None


def test_set_seed_cublas_config(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    _repro.set_seed(1, deterministic=False)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    _repro.set_seed(1)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    _repro.set_seed(1)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_set_seed_configures_torch(monkeypatch):
    calls = []
    torch = types.ModuleType("torch")
    torch.manual_seed = lambda s: calls.append(("manual_seed", s))
    torch.cuda = types.SimpleNamespace(manual_seed_all=lambda s: calls.append(("cuda", s)))
    torch.backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(deterministic=False, benchmark=True)
    )
    torch.use_deterministic_algorithms = lambda mode, warn_only=False: calls.append(
        ("deterministic", mode, warn_only)
    )
    monkeypatch.setitem(sys.modules, "torch", torch)

    _repro.set_seed(3, deterministic=False)
    assert calls == [("manual_seed", 3), ("cuda", 3)]
    assert torch.backends.cudnn.benchmark is True

    calls.clear()
    _repro.set_seed(4)
    assert calls == [("manual_seed", 4), ("cuda", 4), ("deterministic", True, True)]
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


def test_set_seed_survives_broken_torch(monkeypatch):
    torch = types.ModuleType("torch")

    def boom(seed):
        raise RuntimeError("CUDA error")

    torch.manual_seed = boom
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert _repro.set_seed(8) == 8
