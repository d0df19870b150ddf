"""Background system metrics (CPU, memory, load, GPUs) for training runs.

:class:`SystemSampler` runs a daemon thread named ``ketch-system`` that calls
``log(values, step)`` every ``interval`` seconds with keys under ``system/``:

* ``system/cpu.percent``: machine-wide CPU utilisation between two samples,
  0..100 (100 means every CPU busy).
* ``system/process.cpu_percent``: CPU time of this process over wall time,
  0..100*ncpu (100 means one core's worth), over at least 20 ms.
* ``system/memory.used_bytes``, ``system/memory.available_bytes``,
  ``system/memory.percent``: used = total - available.
* ``system/process.rss_bytes``: resident set size of this process.
* ``system/load1``, ``system/load5``, ``system/load15``: load averages.
* ``system/gpu.<i>.utilization``, ``system/gpu.<i>.memory_used_bytes``,
  ``system/gpu.<i>.memory_percent``, ``system/gpu.<i>.temperature_c``,
  ``system/gpu.<i>.power_w``: per NVML device index ``i``.

Only the standard library is needed: on Linux the values come from ``/proc``.
When ``psutil`` is importable it is used instead (and works on any OS); GPUs
are read through ``pynvml`` (the ``nvidia-ml-py`` package), imported lazily
when first needed. Sampling never raises: a source that fails is logged once
at DEBUG on the ``ketch`` logger and skipped from then on.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SystemSampler", "sampler_interval", "system_metrics_enabled"]

log = logging.getLogger("ketch")

DEFAULT_INTERVAL = 10.0
MIN_INTERVAL = 0.1
_ENV_ENABLED = "KETCH_SYSTEM_METRICS"
_ENV_INTERVAL = "KETCH_SYSTEM_METRICS_INTERVAL"
_FALSE = frozenset({"0", "false", "off"})
_PREFIX = "system/"
_MIN_CPU_WINDOW = 0.02  # seconds; /proc/stat counts in 10 ms ticks


def system_metrics_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether system metrics should be collected.

    Args:
        env: Environment to read (default ``os.environ``).

    Returns:
        False when ``KETCH_SYSTEM_METRICS`` is ``0``, ``false`` or ``off``
        (case-insensitive, surrounding whitespace ignored); True otherwise,
        including when it is unset.
    """
    value = env.get(_ENV_ENABLED)
    return value is None or value.strip().lower() not in _FALSE


def sampler_interval(env: Mapping[str, str] = os.environ) -> float:
    """The sampling interval in seconds from ``KETCH_SYSTEM_METRICS_INTERVAL``.

    Args:
        env: Environment to read (default ``os.environ``).

    Returns:
        The interval: 10 when unset or empty, at least 0.1. A value that is not
        a finite number logs a warning and gives the default.
    """
    raw = env.get(_ENV_INTERVAL)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        log.warning(
            "%s=%r is not a number of seconds; using %g",
            _ENV_INTERVAL,
            raw,
            DEFAULT_INTERVAL,
        )
        return DEFAULT_INTERVAL
    return max(value, MIN_INTERVAL)


def _import_optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken install raising anything else
        return None


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_proc_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from the first line of /proc/stat."""
    with open("/proc/stat", "rb") as f:
        line = f.readline()
    fields = [int(x) for x in line.split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time
    # is already counted in user/nice, so only the first eight add up to the total.
    total = sum(fields[:8])
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return float(total - idle), float(total)


def _read_meminfo() -> tuple[int, int]:
    """(total, available) bytes from /proc/meminfo."""
    total = available = free = buffers = cached = None
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            name, _, rest = line.partition(b":")
            if name == b"MemTotal":
                total = int(rest.split()[0]) * 1024
            elif name == b"MemAvailable":
                available = int(rest.split()[0]) * 1024
            elif name == b"MemFree":
                free = int(rest.split()[0]) * 1024
            elif name == b"Buffers":
                buffers = int(rest.split()[0]) * 1024
            elif name == b"Cached":
                cached = int(rest.split()[0]) * 1024
            if total is not None and available is not None:
                break
    if total is None:
        raise ValueError("MemTotal missing from /proc/meminfo")
    if available is None:  # kernels before 3.14
        available = (free or 0) + (buffers or 0) + (cached or 0)
    return total, available


def _read_proc_rss() -> int:
    """Resident set size in bytes from VmRSS in /proc/self/status."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError("VmRSS missing from /proc/self/status")


class SystemSampler:
    """Samples system metrics on a daemon thread and hands them to ``log``.

    Args:
        log: Called as ``log(values, step)`` from the ``ketch-system`` thread
            every ``interval`` seconds, with ``step`` the sample index 0, 1, 2...
            An exception from it is logged (once) and sampling goes on.
        interval: Seconds between samples; must be a positive finite number.
        gpu: Whether to read GPUs through ``pynvml`` when it is importable.

    Raises:
        ValueError: If ``interval`` is not a positive finite number.
    """

    def __init__(
        self,
        log: Callable[[dict[str, float], int], None],
        *,
        interval: float = DEFAULT_INTERVAL,
        gpu: bool = True,
    ) -> None:
        interval = float(interval)
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self._log = log
        self._interval = interval
        self._gpu_wanted = gpu
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step = 0
        self._failed: set[str] = set()

        self._psutil = _import_optional("psutil")
        self._process: Any = None
        if self._psutil is not None:
            try:
                self._process = self._psutil.Process()
            except Exception as exc:
                self._fail("process", exc)

        self._cpu_prev: tuple[float, float] | None = None
        self._cpu_prev_at = 0.0
        self._cpu_last: float | None = None
        self._proc_prev: tuple[float, float] | None = None
        self._proc_last: float | None = None

        self._nvml: Any = None
        self._nvml_ready = False
        self._gpu_handles: list[Any] = []
        self._gpu_failed: set[tuple[int, str]] = set()

        with self._lock:
            self._baseline()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Take a CPU baseline and start the sampler thread (no-op if running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._baseline()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="ketch-system", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the sampler thread promptly; safe to call more than once.

        Args:
            timeout: Seconds to wait for the thread to finish.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._shutdown_gpu()

    def _run(self, stop: threading.Event) -> None:
        log_failed = False
        while not stop.wait(self._interval):
            values = self.sample()
            if stop.is_set():
                break
            step = self._step
            self._step += 1
            try:
                self._log(values, step)
            except Exception:
                if not log_failed:
                    log_failed = True
                    log.warning("system metrics: the log callback failed", exc_info=True)

    # -- sampling ----------------------------------------------------------

    def sample(self) -> dict[str, float]:
        """Take one sample now, on the calling thread.

        Returns:
            Metric key to value; sources that are unavailable are left out.
        """
        values: dict[str, float] = {}
        with self._lock:
            for name, source in (
                ("cpu", self._sample_cpu),
                ("process_cpu", self._sample_process_cpu),
                ("memory", self._sample_memory),
                ("process", self._sample_process_rss),
                ("load", self._sample_load),
            ):
                if name in self._failed:
                    continue
                try:
                    source(values)
                except Exception as exc:
                    self._fail(name, exc)
            if self._gpu_wanted and "gpu" not in self._failed:
                try:
                    self._sample_gpus(values)
                except Exception as exc:
                    self._fail("gpu", exc)
        return values

    def _fail(self, source: str, exc: BaseException) -> None:
        if source not in self._failed:
            self._failed.add(source)
            log.debug("system metrics: %s unavailable, skipping it: %r", source, exc)

    def _baseline(self) -> None:
        """Reset the CPU readings so the next sample covers from now."""
        if "cpu" not in self._failed:
            try:
                self._cpu_prev = self._cpu_times()
                self._cpu_prev_at = time.monotonic()
            except Exception as exc:
                self._fail("cpu", exc)
        self._proc_prev = (time.process_time(), time.monotonic())

    def _cpu_times(self) -> tuple[float, float]:
        if self._psutil is None:
            return _read_proc_cpu()
        t = self._psutil.cpu_times()
        fields = t._asdict()
        total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
        idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
        return total - idle, total

    def _sample_cpu(self, values: dict[str, float]) -> None:
        busy, total = self._cpu_times()
        now = time.monotonic()
        prev = self._cpu_prev
        percent: float | None = None
        if prev is not None and total > prev[1] and now - self._cpu_prev_at >= _MIN_CPU_WINDOW:
            percent = 100.0 * (busy - prev[0]) / (total - prev[1])
            self._cpu_prev, self._cpu_prev_at = (busy, total), now
        elif self._cpu_last is not None:
            # Too soon after the last reading for the kernel's 10 ms ticks to say much.
            percent = self._cpu_last
        elif total > 0:
            percent = 100.0 * busy / total  # average since boot, until a window has passed
        if percent is not None:
            percent = min(max(percent, 0.0), 100.0)
            self._cpu_last = percent
            values[_PREFIX + "cpu.percent"] = percent

    def _sample_process_cpu(self, values: dict[str, float]) -> None:
        cpu, wall = time.process_time(), time.monotonic()
        prev = self._proc_prev
        percent: float | None = None
        if prev is not None and wall - prev[1] >= _MIN_CPU_WINDOW and cpu >= prev[0]:
            percent = 100.0 * (cpu - prev[0]) / (wall - prev[1])
            self._proc_prev = (cpu, wall)
        elif self._proc_last is not None:
            # Other threads' CPU time reaches the process clock at the scheduler's
            # tick, so a window of microseconds can read several cores' worth.
            percent = self._proc_last
        else:
            age = self._process_age()
            if age is not None and age >= _MIN_CPU_WINDOW:
                percent = 100.0 * cpu / age  # average since the process started
        if percent is not None:
            percent = min(max(percent, 0.0), 100.0 * _usable_cpus())
            self._proc_last = percent
            values[_PREFIX + "process.cpu_percent"] = percent

    def _process_age(self) -> float | None:
        """Seconds since this process started, or None when unknown."""
        if self._process is not None:
            return max(time.time() - float(self._process.create_time()), 0.0)
        try:
            with open("/proc/self/stat", "rb") as f:
                stat = f.read()
            with open("/proc/uptime", "rb") as f:
                uptime = float(f.read().split()[0])
        except OSError:
            return None
        # The command name (field 2) may hold spaces; fields after it are plain.
        start_ticks = int(stat.rsplit(b")", 1)[1].split()[19])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)

    def _sample_memory(self, values: dict[str, float]) -> None:
        if self._psutil is not None:
            vm = self._psutil.virtual_memory()
            total, available = int(vm.total), int(vm.available)
        else:
            total, available = _read_meminfo()
        used = max(total - available, 0)
        values[_PREFIX + "memory.used_bytes"] = float(used)
        values[_PREFIX + "memory.available_bytes"] = float(available)
        if total > 0:
            values[_PREFIX + "memory.percent"] = 100.0 * used / total

    def _sample_process_rss(self, values: dict[str, float]) -> None:
        if self._process is not None:
            rss = int(self._process.memory_info().rss)
        else:
            rss = _read_proc_rss()
        values[_PREFIX + "process.rss_bytes"] = float(rss)

    def _sample_load(self, values: dict[str, float]) -> None:
        if hasattr(os, "getloadavg"):
            load = os.getloadavg()  # reads /proc/loadavg on Linux
        elif self._psutil is not None:
            load = self._psutil.getloadavg()
        else:
            raise OSError("no load average on this platform")
        for name, value in zip(("load1", "load5", "load15"), load, strict=False):
            values[_PREFIX + name] = float(value)

    # -- GPUs ----------------------------------------------------------------

    def _init_gpu(self) -> bool:
        if self._nvml_ready:
            return True
        nvml = _import_optional("pynvml")
        if nvml is None:
            self._failed.add("gpu")  # not installed: nothing worth logging
            return False
        nvml.nvmlInit()
        try:
            count = int(nvml.nvmlDeviceGetCount())
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass
            raise
        self._nvml, self._gpu_handles, self._nvml_ready = nvml, handles, True
        return True

    def _shutdown_gpu(self) -> None:
        if not self._nvml_ready:
            return
        nvml, self._nvml, self._nvml_ready, self._gpu_handles = self._nvml, None, False, []
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("system metrics: nvmlShutdown failed: %r", exc)

    def _sample_gpus(self, values: dict[str, float]) -> None:
        if not self._init_gpu():
            return
        nvml = self._nvml
        temperature_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        for i, handle in enumerate(self._gpu_handles):
            base = f"{_PREFIX}gpu.{i}."
            for field in ("utilization", "memory", "temperature", "power"):
                if (i, field) in self._gpu_failed:
                    continue
                try:
                    if field == "utilization":
                        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                        values[base + "utilization"] = float(rates.gpu)
                    elif field == "memory":
                        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                        values[base + "memory_used_bytes"] = float(mem.used)
                        if mem.total:
                            values[base + "memory_percent"] = 100.0 * mem.used / mem.total
                    elif field == "temperature":
                        celsius = nvml.nvmlDeviceGetTemperature(handle, temperature_sensor)
                        values[base + "temperature_c"] = float(celsius)
                    else:
                        milliwatts = nvml.nvmlDeviceGetPowerUsage(handle)
                        values[base + "power_w"] = milliwatts / 1000.0
                except Exception as exc:
                    # e.g. NVMLError_NotSupported for power on some boards
                    self._gpu_failed.add((i, field))
                    log.debug(
                        "system metrics: gpu %d %s unavailable, skipping it: %r", i, field, exc
                    )
