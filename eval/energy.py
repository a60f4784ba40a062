"""Training energy measured the way the benchmark measures it, phase by phase.

Benchmark rule (``run_eval.py``): GPU energy is the delta of NVML's total-energy counter minus an idle baseline
times the duration (fixed 50 W there; here given, or measured before the first phase), floored at 0; CPU energy is
CodeCarbon's estimate; the ranked total is ``max(gpu + cpu, duration_s × 50 W)``. On a host without NVML or
CodeCarbon the missing part counts 0 and is flagged unavailable; the measured work never fails because of the meter.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol

BENCHMARK_IDLE_WATTS = 50.0
FLOOR_WATTS = 50.0

log = logging.getLogger(__name__)


class GpuBackend(Protocol):
    name: str

    def energy_J(self) -> float: ...

    def power_W(self) -> float: ...


class CpuBackend(Protocol):
    def start(self) -> None: ...

    def stop(self) -> float:
        """CPU energy in joules since start()."""
        ...


class NvmlGpu:
    """NVML's monotonic total-energy counter (mJ) and instantaneous power of one GPU."""

    def __init__(self, index: int = 0) -> None:
        import pynvml  # optional at run time: a host without NVML measures no GPU energy

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(self._handle)
        self.name = name.decode() if isinstance(name, bytes) else name
        self.energy_J()  # fail here, not mid-run, when the counter is unsupported

    def energy_J(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def power_W(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0


class CodeCarbonCpu:
    """CodeCarbon's CPU estimate with the benchmark's settings, offline (no network look-ups)."""

    def __init__(self) -> None:
        from codecarbon import OfflineEmissionsTracker  # slow to import: loaded only when a meter measures CPU

        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # its import sets INFO; keep progress bars readable
        self._factory = OfflineEmissionsTracker
        self._tracker = None

    def start(self) -> None:
        with warnings.catch_warnings():  # save_to_file is deprecated, but it is what the benchmark passes
            warnings.simplefilter("ignore", DeprecationWarning)
            self._tracker = self._factory(
                country_iso_code="USA", save_to_file=False, log_level="error", measure_power_secs=1.0
            )
        self._tracker.start()

    def stop(self) -> float:
        self._tracker.stop()
        return float(self._tracker._total_cpu_energy.kWh) * 3.6e6


def open_gpu(index: int = 0) -> GpuBackend | None:
    try:
        return NvmlGpu(index)
    except Exception as err:  # no driver, no GPU, unsupported counter: all mean "no GPU part"
        log.info("NVML unavailable (%s): GPU energy counts 0", err)
        return None


def open_cpu() -> CpuBackend | None:
    try:
        return CodeCarbonCpu()
    except Exception as err:
        log.info("CodeCarbon unavailable (%s): CPU energy counts 0", err)
        return None


@dataclass
class PhaseEnergy:
    """Energy of one measured block; filled in even when the block raised."""

    name: str
    duration_s: float = 0.0
    gpu_energy_J: float = 0.0
    cpu_energy_J: float = 0.0
    gpu_available: bool = False
    cpu_available: bool = False

    @property
    def total_energy_J(self) -> float:
        return max(self.gpu_energy_J + self.cpu_energy_J, self.duration_s * FLOOR_WATTS)

    def to_dict(self) -> dict:
        return {**asdict(self), "total_energy_J": self.total_energy_J}


@dataclass
class EnergyReport:
    """Sum over phases, with the floor applied to the summed duration as the benchmark applies it to train()."""

    phases: dict[str, PhaseEnergy] = field(default_factory=dict)
    gpu_name: str | None = None
    idle_watts: float = BENCHMARK_IDLE_WATTS

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phases.values())

    @property
    def gpu_energy_J(self) -> float:
        return sum(p.gpu_energy_J for p in self.phases.values())

    @property
    def cpu_energy_J(self) -> float:
        return sum(p.cpu_energy_J for p in self.phases.values())

    @property
    def total_energy_J(self) -> float:
        return max(self.gpu_energy_J + self.cpu_energy_J, self.duration_s * FLOOR_WATTS)

    @property
    def gpu_available(self) -> bool:
        return any(p.gpu_available for p in self.phases.values())

    @property
    def cpu_available(self) -> bool:
        return any(p.cpu_available for p in self.phases.values())

    def to_dict(self) -> dict:
        return {
            "total_energy_J": self.total_energy_J,
            "gpu_energy_J": self.gpu_energy_J,
            "cpu_energy_J": self.cpu_energy_J,
            "duration_s": self.duration_s,
            "gpu_available": self.gpu_available,
            "cpu_available": self.cpu_available,
            "gpu_name": self.gpu_name,
            "idle_watts": self.idle_watts,
            "phases": {name: phase.to_dict() for name, phase in self.phases.items()},
        }


class EnergyMeter:
    """Measures named phases (``with meter.phase("train"): ...``) and sums them into an :class:`EnergyReport`.

    ``idle_watts``: the GPU baseline subtracted per second; the benchmark's fixed 50 W by default, or None to
    measure it (mean NVML power over ``idle_seconds``) before the first phase.
    """

    def __init__(
        self,
        *,
        gpu_index: int = 0,
        idle_watts: float | None = BENCHMARK_IDLE_WATTS,
        idle_seconds: float = 3.0,
        gpu: GpuBackend | None | bool = True,
        cpu: CpuBackend | None | bool = True,
    ) -> None:
        self.gpu = open_gpu(gpu_index) if gpu is True else (gpu or None)
        self.cpu = open_cpu() if cpu is True else (cpu or None)
        self.report = EnergyReport(gpu_name=self.gpu.name if self.gpu else None)
        self._idle_watts = idle_watts
        self._idle_seconds = idle_seconds

    @property
    def idle_watts(self) -> float:
        if self._idle_watts is None:
            self._idle_watts = self._measure_idle_watts()
        return self._idle_watts

    def _measure_idle_watts(self) -> float:
        if self.gpu is None:
            return BENCHMARK_IDLE_WATTS
        samples = []
        deadline = time.monotonic() + self._idle_seconds
        while time.monotonic() < deadline:
            samples.append(self.gpu.power_W())
            time.sleep(0.05)
        return sum(samples) / len(samples)

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseEnergy]:
        """Measure the block; the yielded record is complete once the block ends, even by an exception."""
        record = PhaseEnergy(name)
        idle = self.idle_watts if self.gpu else 0.0
        self.report.idle_watts = idle or self.report.idle_watts
        gpu_start = self._safe(lambda: self.gpu.energy_J()) if self.gpu else None
        cpu_started = self._safe(lambda: self.cpu.start() or True) if self.cpu else None
        start = time.monotonic()
        try:
            yield record
        finally:
            record.duration_s = time.monotonic() - start
            if gpu_start is not None:
                gpu_end = self._safe(lambda: self.gpu.energy_J())
                if gpu_end is not None:
                    record.gpu_energy_J = max(0.0, gpu_end - gpu_start - idle * record.duration_s)
                    record.gpu_available = True
            if cpu_started:
                cpu_joules = self._safe(lambda: self.cpu.stop())
                if cpu_joules is not None:
                    record.cpu_energy_J = max(0.0, cpu_joules)
                    record.cpu_available = True
            previous = self.report.phases.get(name)
            if previous is not None:  # a phase entered twice accumulates
                record = merge_phases(previous, record)
            self.report.phases[name] = record

    @staticmethod
    def _safe(read):
        try:
            return read()
        except Exception as err:
            log.warning("energy reading failed (%s); that part counts 0", err)
            return None


def merge_phases(a: PhaseEnergy, b: PhaseEnergy) -> PhaseEnergy:
    return PhaseEnergy(
        a.name,
        a.duration_s + b.duration_s,
        a.gpu_energy_J + b.gpu_energy_J,
        a.cpu_energy_J + b.cpu_energy_J,
        a.gpu_available or b.gpu_available,
        a.cpu_available or b.cpu_available,
    )
