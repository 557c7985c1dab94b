"""Peak memory of a code region, for the benchmarks (Linux: /proc; CUDA: the caching allocator's counters)."""

from __future__ import annotations


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Extra peak memory from :meth:`reset` on: VmHWM - VmRSS on CPU, max allocated - allocated on CUDA."""

    def __init__(self, device: str):
        self.device = device
        self.base = None

    def reset(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.base = _status_kb("VmRSS") * 1024

    def extra_mb(self) -> float:
        if self.device == "cuda":
            import torch

            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (_status_kb("VmHWM") * 1024 - self.base) / 2**20
