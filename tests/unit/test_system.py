"""Tests for ketch._system: the background system-metrics sampler."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from ketch import _system
from ketch._system import SystemSampler, sampler_interval, system_metrics_enabled

KEY_RE = re.compile(r"[A-Za-z0-9_\-. /:@=+]+")
NCPU = os.cpu_count() or 1
ON_LINUX = Path("/proc/self/status").exists()
needs_proc = pytest.mark.skipif(not ON_LINUX, reason="needs Linux /proc")

GPU_SUFFIXES = (
    "utilization",
    "memory_used_bytes",
    "memory_percent",
    "temperature_c",
    "power_w",
)


def _meminfo_kb(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in /proc/meminfo")


def _status_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmRSS not in /proc/self/status")


def _gpu_keys(values: dict[str, float]) -> set[str]:
    return {k for k in values if k.startswith("system/gpu.")}


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


@pytest.fixture(autouse=True)
def no_real_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any real pynvml unless a test installs a fake one."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail


# -- host metrics -------------------------------------------------------------


def test_sample_has_sane_host_values() -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    values = sampler.sample()
    assert 0.0 <= values["system/cpu.percent"] <= 100.0 * NCPU
    assert 0.0 <= values["system/process.cpu_percent"] <= 100.0 * NCPU + 1
    assert values["system/memory.used_bytes"] > 0
    assert 0.0 < values["system/memory.percent"] <= 100.0
    assert values["system/process.rss_bytes"] > 0
    assert values["system/load1"] >= 0.0
    assert all(isinstance(v, float) for v in values.values())
    assert not _gpu_keys(values)


@needs_proc
def test_memory_and_rss_match_proc() -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    values = sampler.sample()
    rss = _status_rss()
    assert values["system/memory.used_bytes"] <= _meminfo_kb("MemTotal") * 1024
    # RSS moves a little between the two reads; allow 10% or 8 MiB.
    assert abs(values["system/process.rss_bytes"] - rss) <= max(0.1 * rss, 8 << 20)


@needs_proc
def test_proc_readers_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    assert sampler._psutil is None
    values = sampler.sample()
    total = _meminfo_kb("MemTotal") * 1024
    assert 0 < values["system/memory.used_bytes"] <= total
    assert values["system/memory.used_bytes"] + values["system/memory.available_bytes"] == total
    assert values["system/process.rss_bytes"] == pytest.approx(_status_rss(), rel=0.1, abs=8 << 20)
    assert 0.0 <= values["system/cpu.percent"] <= 100.0


def test_process_cpu_ignores_windows_shorter_than_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Other threads' CPU time reaches the process clock in scheduler ticks: a
    # window of microseconds can see 10 ms of CPU land at once (CI read 381% on
    # two cores). Such windows must not produce a reading, and none exceeds the
    # CPUs this process may use.
    clock = {"cpu": 5.0, "wall": 1000.0}
    fake_time = types.SimpleNamespace(
        process_time=lambda: clock["cpu"],
        monotonic=lambda: clock["wall"],
        time=time.time,
        sleep=time.sleep,
    )
    monkeypatch.setattr(_system, "time", fake_time)
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    clock["cpu"] += 0.5
    clock["wall"] += 1.0
    assert sampler.sample()["system/process.cpu_percent"] == pytest.approx(50.0)
    clock["cpu"] += 0.01  # a tick of another thread's time, 5 µs later
    clock["wall"] += 0.000005
    assert sampler.sample()["system/process.cpu_percent"] == pytest.approx(50.0)
    clock["cpu"] += 1000.0  # impossible: more CPU than wall time on every core
    clock["wall"] += 1.0
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else NCPU
    assert sampler.sample()["system/process.cpu_percent"] == pytest.approx(100.0 * ncpu)


def test_cpu_percent_rises_under_load() -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    sampler.sample()
    burner = threading.Thread(target=_burn, args=(0.3,))
    burner.start()
    burner.join()
    values = sampler.sample()
    # One busy thread is one core: 100/NCPU percent machine-wide; demand 30% of that.
    assert values["system/cpu.percent"] > 30.0 / NCPU
    assert values["system/cpu.percent"] <= 100.0
    assert values["system/process.cpu_percent"] > 30.0


def test_one_sample_is_cheap() -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    sampler.sample()
    runs = 50
    t0 = time.perf_counter()
    for _ in range(runs):
        sampler.sample()
    assert (time.perf_counter() - t0) / runs < 0.005


def test_failing_source_is_skipped_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)

    def broken(values: dict[str, float]) -> None:
        raise OSError("no memory info here")

    monkeypatch.setattr(sampler, "_sample_memory", broken)
    with caplog.at_level(logging.DEBUG, logger="ketch"):
        first = sampler.sample()
        second = sampler.sample()
    assert "system/memory.used_bytes" not in first
    assert "system/memory.used_bytes" not in second
    assert "system/process.rss_bytes" in second
    assert sum("memory unavailable" in r.getMessage() for r in caplog.records) == 1


# -- the thread -----------------------------------------------------------------


def test_thread_logs_increasing_steps_and_stops_promptly() -> None:
    calls: list[tuple[dict[str, float], int]] = []
    enough = threading.Event()

    def record(values: dict[str, float], step: int) -> None:
        calls.append((values, step))
        if len(calls) >= 4:
            enough.set()

    sampler = SystemSampler(record, interval=0.05, gpu=False)
    sampler.start()
    thread = sampler._thread
    assert thread is not None
    assert thread.name == "ketch-system"
    assert thread.daemon
    sampler.start()  # no-op while running
    assert sampler._thread is thread
    assert enough.wait(5.0)

    t0 = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - t0 < 0.5
    assert not thread.is_alive()
    n = len(calls)
    steps = [step for _, step in calls]
    assert steps == list(range(n))
    assert all("system/cpu.percent" in values for values, _ in calls)

    t0 = time.perf_counter()
    sampler.stop()  # idempotent
    assert time.perf_counter() - t0 < 0.5
    time.sleep(0.15)
    assert len(calls) == n


def test_stop_is_prompt_with_long_interval() -> None:
    sampler = SystemSampler(lambda values, step: None, interval=60.0, gpu=False)
    sampler.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - t0 < 0.5
    assert sampler._thread is not None and not sampler._thread.is_alive()


def test_stop_before_start_is_harmless() -> None:
    sampler = SystemSampler(lambda values, step: None, gpu=False)
    sampler.stop()
    sampler.stop()


def test_failing_callback_does_not_kill_thread() -> None:
    steps: list[int] = []
    enough = threading.Event()

    def flaky(values: dict[str, float], step: int) -> None:
        steps.append(step)
        if len(steps) >= 3:
            enough.set()
        raise RuntimeError("callback broke")

    sampler = SystemSampler(flaky, interval=0.05, gpu=False)
    sampler.start()
    try:
        assert enough.wait(5.0)
    finally:
        sampler.stop()
    assert steps[:3] == [0, 1, 2]


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_bad_interval_rejected(interval: float) -> None:
    with pytest.raises(ValueError):
        SystemSampler(lambda values, step: None, interval=interval)


# -- GPUs ---------------------------------------------------------------------


def _fake_pynvml(*, fail_init: bool = False, no_power_on: int | None = None) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    mod.NVML_TEMPERATURE_GPU = 0
    state = {"init": 0, "shutdown": 0}
    mod.state = state

    class NVMLError(Exception):
        pass

    def nvmlInit() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")
        state["init"] += 1

    def nvmlShutdown() -> None:
        state["shutdown"] += 1

    def nvmlDeviceGetCount() -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(i: int) -> object:
        return types.SimpleNamespace(index=i)

    def nvmlDeviceGetUtilizationRates(h: types.SimpleNamespace) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=30 + 10 * h.index, memory=5)

    def nvmlDeviceGetMemoryInfo(h: types.SimpleNamespace) -> types.SimpleNamespace:
        total = 80 * 2**30
        return types.SimpleNamespace(used=(h.index + 1) * 20 * 2**30, total=total, free=0)

    def nvmlDeviceGetTemperature(h: types.SimpleNamespace, sensor: int) -> int:
        assert sensor == 0
        return 60 + h.index

    def nvmlDeviceGetPowerUsage(h: types.SimpleNamespace) -> int:
        if h.index == no_power_on:
            raise NVMLError("Not Supported")
        return 250_500 + 1000 * h.index  # milliwatts

    for fn in (
        nvmlInit,
        nvmlShutdown,
        nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetUtilizationRates,
        nvmlDeviceGetMemoryInfo,
        nvmlDeviceGetTemperature,
        nvmlDeviceGetPowerUsage,
    ):
        setattr(mod, fn.__name__, fn)
    mod.NVMLError = NVMLError
    return mod


def test_fake_pynvml_gives_gpu_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = SystemSampler(lambda values, step: None)
    values = sampler.sample()
    assert _gpu_keys(values) == {f"system/gpu.{i}.{s}" for i in (0, 1) for s in GPU_SUFFIXES}
    assert values["system/gpu.0.utilization"] == 30.0
    assert values["system/gpu.1.utilization"] == 40.0
    assert values["system/gpu.0.memory_used_bytes"] == 20 * 2**30
    assert values["system/gpu.1.memory_used_bytes"] == 40 * 2**30
    assert values["system/gpu.0.memory_percent"] == pytest.approx(25.0)
    assert values["system/gpu.1.memory_percent"] == pytest.approx(50.0)
    assert values["system/gpu.0.temperature_c"] == 60.0
    assert values["system/gpu.1.temperature_c"] == 61.0
    assert values["system/gpu.0.power_w"] == pytest.approx(250.5)
    assert values["system/gpu.1.power_w"] == pytest.approx(251.5)
    assert all(isinstance(v, float) for v in values.values())

    sampler.sample()
    assert fake.state["init"] == 1  # initialised once, not per sample
    sampler.stop()
    assert fake.state["shutdown"] == 1
    sampler.stop()
    assert fake.state["shutdown"] == 1


def test_gpu_disabled_does_not_touch_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    values = SystemSampler(lambda values, step: None, gpu=False).sample()
    assert not _gpu_keys(values)
    assert fake.state["init"] == 0


def test_unsupported_gpu_field_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(no_power_on=1))
    sampler = SystemSampler(lambda values, step: None)
    for _ in range(2):
        values = sampler.sample()
        assert "system/gpu.0.power_w" in values
        assert "system/gpu.1.power_w" not in values
        assert "system/gpu.1.temperature_c" in values


def test_pynvml_init_failure_gives_no_gpu_keys(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    sampler = SystemSampler(lambda values, step: None)
    with caplog.at_level(logging.DEBUG, logger="ketch"):
        first = sampler.sample()
        second = sampler.sample()
    assert not _gpu_keys(first) and not _gpu_keys(second)
    assert "system/cpu.percent" in second
    gpu_logs = [r for r in caplog.records if "gpu unavailable" in r.getMessage()]
    assert len(gpu_logs) == 1
    assert gpu_logs[0].levelno == logging.DEBUG
    sampler.stop()


def test_missing_pynvml_gives_no_gpu_keys() -> None:
    values = SystemSampler(lambda values, step: None).sample()  # fixture hides pynvml
    assert not _gpu_keys(values)


# -- keys -----------------------------------------------------------------------


def test_every_key_is_in_the_key_alphabet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    values = SystemSampler(lambda values, step: None).sample()
    assert len(values) > 10
    for key in values:
        assert KEY_RE.fullmatch(key), key
        assert key.startswith("system/")


# -- environment ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ("1", True),
        ("true", True),
        ("on", True),
        ("", True),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("off", False),
        (" Off ", False),
    ],
)
def test_system_metrics_enabled(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"KETCH_SYSTEM_METRICS": value}
    assert system_metrics_enabled(env) is expected


def test_system_metrics_enabled_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETCH_SYSTEM_METRICS", "off")
    assert system_metrics_enabled() is False
    monkeypatch.delenv("KETCH_SYSTEM_METRICS")
    assert system_metrics_enabled() is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 10.0),
        ("", 10.0),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0.1", 0.1),
        ("0.01", 0.1),
        ("0", 0.1),
        ("-3", 0.1),
    ],
)
def test_sampler_interval(value: str | None, expected: float) -> None:
    env = {} if value is None else {"KETCH_SYSTEM_METRICS_INTERVAL": value}
    assert sampler_interval(env) == expected


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "1s"])
def test_sampler_interval_invalid_warns(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ketch"):
        assert sampler_interval({"KETCH_SYSTEM_METRICS_INTERVAL": value}) == 10.0
    assert any(
        r.levelno == logging.WARNING and "KETCH_SYSTEM_METRICS_INTERVAL" in r.getMessage()
        for r in caplog.records
    )


def test_sampler_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETCH_SYSTEM_METRICS_INTERVAL", "3")
    assert sampler_interval() == 3.0


def test_module_exports() -> None:
    assert set(_system.__all__) == {"SystemSampler", "sampler_interval", "system_metrics_enabled"}


def test_psutil_is_preferred_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    import collections

    times = collections.namedtuple("scputimes", "user nice system idle iowait guest guest_nice")
    readings = iter([times(10, 0, 10, 80, 0, 5, 0), times(40, 0, 20, 130, 10, 50, 0)])
    fake = types.ModuleType("psutil")
    fake.cpu_times = lambda: next(readings)
    fake.virtual_memory = lambda: types.SimpleNamespace(total=1000, available=250)
    fake.getloadavg = lambda: (1.0, 2.0, 3.0)
    fake.Process = lambda: types.SimpleNamespace(
        memory_info=lambda: types.SimpleNamespace(rss=12345)
    )
    monkeypatch.setitem(sys.modules, "psutil", fake)
    sampler = SystemSampler(lambda values, step: None, gpu=False)  # baseline: first reading
    time.sleep(0.05)  # past the minimum CPU window
    values = sampler.sample()
    # busy 30+10 of total 100 (guest time is inside user, so not added again); iowait is idle
    assert values["system/cpu.percent"] == pytest.approx(40.0)
    assert values["system/memory.used_bytes"] == 750.0
    assert values["system/memory.percent"] == pytest.approx(75.0)
    assert values["system/process.rss_bytes"] == 12345.0
