"""Training energy measured the way the benchmark measures it: one block, split into named phases.

Benchmark rule (cybertronai/wikitext ``wikitext.EnergyMeter.measure()`` around ``train()`` in ``run_eval.py``):
read NVML's total-energy counter, start one CodeCarbon tracker, start the clock; at the end stop the clock, read the
counter, stop the tracker. GPU energy is the counter's delta minus a fixed 50 W idle baseline times the duration,
floored at 0 (no idle is measured, no warm-up is run); CPU energy is the tracker's estimate; the ranked total is
``max(gpu + cpu, duration_s × 50 W)``. :meth:`EnergyMeter.measure` is that block. Phases inside it
(``meter.phase("train")``) are splits read from the same counter and the same running tracker at their edges, so the
block's total is what the benchmark would charge for the whole block, however many phases it holds. A phase entered
outside any block is a block of its own. On a host without NVML or CodeCarbon the missing part counts 0 and is
flagged unavailable; the measured work never fails because of the meter.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol, TypeVar

BENCHMARK_IDLE_WATTS = 50.0
FLOOR_WATTS = 50.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class GpuBackend(Protocol):
    name: str

    def energy_J(self) -> float:
        """The GPU's monotonic energy counter, in joules."""
        ...


class CpuBackend(Protocol):
    def start(self) -> None: ...

    def read(self) -> float:
        """CPU energy in joules since start(), still measuring."""
        ...

    def stop(self) -> float:
        """CPU energy in joules since start(); measuring ends."""
        ...


class NvmlGpu:
    """NVML's monotonic total-energy counter (mJ) of one GPU."""

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


class CodeCarbonCpu:
    """CodeCarbon's CPU estimate with the benchmark's settings, offline (no network look-ups).

    ``read`` asks the running tracker to account the time since its last 1 s sample now (its ``flush``), so a
    phase edge splits one sample instead of shifting up to a second of energy into the next phase.
    """

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

    def read(self) -> float:
        self._tracker.flush()
        return self._joules()

    def stop(self) -> float:
        self._tracker.stop()
        return self._joules()

    def _joules(self) -> float:
        return float(self._tracker._total_cpu_energy.kWh) * 3.6e6  # the attribute the benchmark reads, kWh -> J


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
    """Energy of one measured stretch (a block or a phase); filled in even when it raised.

    ``gpu_energy_J`` is net of the idle baseline over this stretch's own duration, floored at 0.
    """

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
    """The measured blocks and the phases split from them.

    The totals come from the blocks, each measured as the benchmark measures ``train()``; the floor applies to
    their summed duration. Phases are splits for the record: they leave out the time between them (``unphased_s``)
    and each is netted and floored on its own, so they need not add up to the totals.
    """

    phases: dict[str, PhaseEnergy] = field(default_factory=dict)
    blocks: list[PhaseEnergy] = field(default_factory=list)
    gpu_name: str | None = None
    idle_watts: float = BENCHMARK_IDLE_WATTS

    @property
    def duration_s(self) -> float:
        return sum(block.duration_s for block in self.blocks)

    @property
    def gpu_energy_J(self) -> float:
        return sum(block.gpu_energy_J for block in self.blocks)

    @property
    def cpu_energy_J(self) -> float:
        return sum(block.cpu_energy_J for block in self.blocks)

    @property
    def total_energy_J(self) -> float:
        return max(self.gpu_energy_J + self.cpu_energy_J, self.duration_s * FLOOR_WATTS)

    @property
    def gpu_available(self) -> bool:
        return any(block.gpu_available for block in self.blocks)

    @property
    def cpu_available(self) -> bool:
        return any(block.cpu_available for block in self.blocks)

    @property
    def unphased_s(self) -> float:
        """Time inside the blocks outside every phase: measured and charged, but in no phase's split."""
        return self.duration_s - sum(phase.duration_s for phase in self.phases.values())

    def to_dict(self) -> dict:
        return {
            "total_energy_J": self.total_energy_J,
            "gpu_energy_J": self.gpu_energy_J,
            "cpu_energy_J": self.cpu_energy_J,
            "duration_s": self.duration_s,
            "unphased_s": self.unphased_s,
            "gpu_available": self.gpu_available,
            "cpu_available": self.cpu_available,
            "gpu_name": self.gpu_name,
            "idle_watts": self.idle_watts,
            "blocks": [block.to_dict() for block in self.blocks],
            "phases": {name: phase.to_dict() for name, phase in self.phases.items()},
        }


@dataclass
class Reading:
    """The meter's cumulative counters at one instant of a block (None: that part is not measured)."""

    at: float
    gpu_J: float | None
    cpu_J: float | None


class EnergyMeter:
    """Measures a block (``with meter.measure(): ...``) split into named phases (``with meter.phase("train"):``)
    and accumulates them into an :class:`EnergyReport`.

    ``idle_watts``: the GPU baseline subtracted per second, the benchmark's fixed 50 W unless told otherwise.
    """

    def __init__(
        self,
        *,
        gpu_index: int = 0,
        idle_watts: float = BENCHMARK_IDLE_WATTS,
        gpu: GpuBackend | None | bool = True,
        cpu: CpuBackend | None | bool = True,
    ) -> None:
        self.gpu = open_gpu(gpu_index) if gpu is True else (gpu or None)
        self.cpu = open_cpu() if cpu is True else (cpu or None)
        self.report = EnergyReport(gpu_name=self.gpu.name if self.gpu else None, idle_watts=idle_watts)
        self.idle_watts = idle_watts
        self._block_start: Reading | None = None

    @contextmanager
    def measure(self) -> Iterator[PhaseEnergy]:
        """One block, in the benchmark's order: counter read, tracker started, clock started; at the end clock,
        counter, tracker. The yielded record (also appended to ``report.blocks``) is complete once the block ends,
        even by an exception."""
        if self._block_start is not None:
            raise RuntimeError("EnergyMeter.measure() blocks do not nest")
        gpu_J = self._safe(self.gpu.energy_J) if self.gpu else None
        cpu_started = self.cpu is not None and self._safe(lambda: self.cpu.start() or True) is not None
        self._block_start = Reading(time.monotonic(), gpu_J, 0.0 if cpu_started else None)
        record = PhaseEnergy("block")
        try:
            yield record
        finally:
            start, self._block_start = self._block_start, None
            at = time.monotonic()
            gpu_end = self._safe(self.gpu.energy_J) if start.gpu_J is not None else None
            cpu_J = self._safe(self.cpu.stop) if start.cpu_J is not None else None
            self._fill(record, start, Reading(at, gpu_end, cpu_J))
            self.report.blocks.append(record)

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseEnergy]:
        """A named split of the open block, or a block of its own outside one. The yielded record is complete
        once the phase ends, even by an exception; a phase entered twice accumulates."""
        record = PhaseEnergy(name)
        own_block = self._block_start is None
        try:
            if own_block:
                with self.measure() as block:
                    yield record
            else:
                start = self._read(clock_last=True)
                yield record
        finally:
            if own_block:
                record.duration_s, record.gpu_energy_J, record.cpu_energy_J = (
                    block.duration_s, block.gpu_energy_J, block.cpu_energy_J)
                record.gpu_available, record.cpu_available = block.gpu_available, block.cpu_available
            else:
                self._fill(record, start, self._read(clock_last=False))
            previous = self.report.phases.get(name)
            self.report.phases[name] = record if previous is None else merge_phases(previous, record)

    def _read(self, clock_last: bool) -> Reading:
        """The open block's counters now, in the block's order: the clock last at a start, first at an end."""
        at = time.monotonic()
        gpu_J = self._safe(self.gpu.energy_J) if self._block_start.gpu_J is not None else None
        cpu_J = self._safe(self.cpu.read) if self._block_start.cpu_J is not None else None
        return Reading(time.monotonic() if clock_last else at, gpu_J, cpu_J)

    def _fill(self, record: PhaseEnergy, start: Reading, end: Reading) -> None:
        record.duration_s = end.at - start.at
        if start.gpu_J is not None and end.gpu_J is not None:
            record.gpu_energy_J = max(0.0, end.gpu_J - start.gpu_J - self.idle_watts * record.duration_s)
            record.gpu_available = True
        if start.cpu_J is not None and end.cpu_J is not None:
            record.cpu_energy_J = max(0.0, end.cpu_J - start.cpu_J)
            record.cpu_available = True

    @staticmethod
    def _safe(read: Callable[[], T]) -> T | None:
        """``read()``, or None when the backend fails: logged, never raised into the measured work."""
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
