"""Multi-process training under ``torchrun``: ranks from the environment, one run dir, collective decisions.

``torchrun --nproc_per_node=N -m dlexp ...`` starts N copies of the program with
RANK, WORLD_SIZE and LOCAL_RANK set. Each joins one process group (gloo on the
CPU, NCCL on CUDA) before Hydra composes the config, so that rank 0 can choose
the run dir and hand it to the others: every rank resolving ``${now:}`` on its
own would give each its own dir (hydra #2070). Only rank 0 writes files.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from typing import Any

# A collective that waits longer than this means a peer is gone: fail instead of hanging.
COLLECTIVE_TIMEOUT = timedelta(seconds=int(os.environ.get("DLEXP_COLLECTIVE_TIMEOUT", "120")))


def ranks_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank); (0, 1, 0) outside torchrun."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def launched_by_torchrun() -> bool:
    return ranks_from_env()[1] > 1


def join_process_group(argv: list[str]) -> None:
    """Join the process group, then make every rank use rank 0's run (or sweep) dir.

    Appends ``hydra.run.dir=...`` (or ``hydra.sweep.dir``) to ``argv`` unless the user set it,
    and ``hydra.output_subdir=null`` on the other ranks, so only rank 0 writes ``.hydra/``.
    """
    import torch.distributed as dist

    rank = ranks_from_env()[0]
    _init_group(forced_cpu=any(a in ("trainer.device=cpu", "++trainer.device=cpu") for a in argv))
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if not any(a.startswith(key + "=") for a in argv) and not any(a.startswith("resume=") for a in argv):
        chosen = [_default_dir(multirun) if rank == 0 else None]
        dist.broadcast_object_list(chosen, src=0)
        argv.append(f"{key}={chosen[0]}")
    if rank != 0:
        argv.append("hydra.output_subdir=null")


def _init_group(forced_cpu: bool) -> None:
    """gloo on the CPU, NCCL on CUDA with one GPU per local rank; RANK, WORLD_SIZE, MASTER_ADDR/PORT from the env."""
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and not forced_cpu
    if use_cuda:
        torch.cuda.set_device(ranks_from_env()[2])
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)


def join_submitit_tasks(forced_cpu: bool) -> None:
    """A SLURM job of several tasks from the submitit launcher (``hydra.launcher.tasks_per_node`` > 1):
    each task is one rank. The launcher hands every task the same, already resolved run dir."""
    if "RANK" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK
    quiet_other_ranks()
    _init_group(forced_cpu)


def _default_dir(multirun: bool) -> str:
    """The dir conf/train.yaml's ``${now:}`` pattern would give, resolved once, on rank 0."""
    now = datetime.now()
    base = "outputs/multirun" if multirun else "outputs"
    return f"{base}/{now:%Y-%m-%d}/{now:%H-%M-%S-%f}"


def leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Collectives:
    """The ``dlexp.tasks.metrics.Reducer`` of this process: sums and gathers over every rank under
    torchrun, and hands values back unchanged in one process."""

    def sum(self, tensor: Any) -> Any:
        return all_reduce_sum(tensor)

    def gather(self, items: list) -> list:
        return all_gather_lists(items)


COLLECTIVES = Collectives()


def all_reduce_sum(tensor: Any) -> Any:
    """Sum ``tensor`` over every rank, in place; a no-op in one process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_lists(items: list) -> list:
    """Every rank's list, concatenated in rank order; the list itself in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def all_reduce_max(tensor: Any) -> Any:
    """The largest value over every rank, in place: a flag any one rank raised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def quiet_other_ranks() -> None:
    """Ranks other than 0 print errors only: their standard output goes nowhere."""
    if ranks_from_env()[0] != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (kept open for the life of the process)
