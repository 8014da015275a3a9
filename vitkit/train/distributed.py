"""Training on many processes with PyTorch's own engine: ``torchrun`` starts them, vitkit joins them.

``torchrun --nproc-per-node N -m vitkit train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; the
trainer then wraps the model in DistributedDataParallel (or shards it with FSDP2's ``fully_shard`` when
``--fsdp``), each process trains on its slice of the same global batch, and only rank 0 writes files.
Checkpoints always hold full (unsharded) state dicts, so a run resumes on any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import VitkitError
from ..models.base import block_stacks


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world`` processes (one process: 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched_world() -> int:
    """The number of processes torchrun started for this run (1 without torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def single_process_device() -> torch.device:
    """The device a one-process run trains on: the GPU where there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def start(device: str | torch.device | None = None) -> tuple[Group, torch.device]:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world = launched_world()
    if world <= 1:
        return Group(), torch.device(device) if device else single_process_device()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device is not None:
        chosen = torch.device(device)
    elif torch.cuda.is_available():
        chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        chosen = torch.device("cpu")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Group(rank, world, local_rank), chosen


def local_batch(batch_size: int, accum_steps: int, world: int) -> int:
    """Each process's share of the global ``batch_size``, which must split evenly into ``accum_steps`` micro-batches."""
    if batch_size % world:
        raise VitkitError(f"--batch-size {batch_size} (the global batch) is not divisible by the {world} "
                          "processes; pick a multiple")
    if (batch_size // world) % accum_steps:
        raise VitkitError(f"the per-process batch {batch_size // world} is not divisible by --accum-steps "
                          f"{accum_steps}; change one of them")
    return batch_size // world


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise VitkitError(f"environment variable {name}={value!r} is not an integer; start with torchrun") from None


def stop(group: Group, finished: bool = True) -> None:
    """Leave the process group (after the last collective). ``finished``: every rank got here the normal way, so
    they first wait for each other: rank 0 writes checkpoints after the last collective, and a rank that tears its
    gloo connections down meanwhile can make the other abort (SIGABRT seen under load). After an error no rank
    waits (the others may never arrive)."""
    if group.active and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, group: Group, device: torch.device, fsdp: bool) -> nn.Module:
    """The module to call for training: DDP, FSDP (sharded in place, block by block) or the model itself."""
    if not group.active:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for stack in block_stacks(model):  # one all-gather per block keeps peak memory to one block
            for block in stack:
                fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sum_all(values: list[float], group: Group, device: torch.device) -> list[float]:
    """Element-wise sums over all processes (the values themselves for one process)."""
    if not group.active:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_true(flag: bool, group: Group, device: torch.device) -> bool:
    """Whether any process says yes: every process then takes the same branch (a stop, a skip)."""
    return sum_all([float(flag)], group, device)[0] > 0


def global_norm(norm: torch.Tensor) -> float:
    """A gradient norm as a float (FSDP returns it as a DTensor)."""
    full = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return float(full)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (unsharded, CPU) model and optimiser state dicts, keyed by parameter name. A collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict) -> None:
    """Load what :func:`full_state` returned, on any number of processes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    # Kernel choice (fused / foreach) belongs to this process's optimiser, not to the one that saved.
    own = optimizer.param_groups[0]
    for saved in optim_state.get("param_groups", []):
        for key in ("fused", "foreach"):
            if key in own:
                saved[key] = own[key]
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                   options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
