"""One process per GPU under torchrun, or a single process: the rank, world size and device a training run uses,
and the few collective operations the epoch loop needs (sums of counters, one stop decision for all ranks)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    """One process per GPU under torchrun (WORLD_SIZE > 1), else a single process."""
    from fer_explain.device import pick_device
    use_cuda = pick_device(device_name).type == "cuda"  # --device cuda without CUDA: UserError there
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    import torch.distributed as dist
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), world, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def all_reduce_sum(values: list[float], dist_: Dist) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=dist_.device)
    if dist_.world > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, dist_: Dist) -> bool:
    """True on every rank when it is True on any: ranks whose clocks differ still stop at the same epoch."""
    return all_reduce_sum([float(flag)], dist_)[0] > 0
