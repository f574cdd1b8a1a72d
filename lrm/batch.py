"""Batch reconstruction over many images: CPU worker processes and multi-GPU sharding.

- `--workers N` (CPU): N processes, each with its own Reconstructor and threads/N torch threads.
  The weights are memory-mapped safetensors, so the processes share one copy of them in RAM.
- `accelerate launch -m lrm reconstruct DIR ...` (or torchrun): every process takes the images
  `i` with `i % WORLD_SIZE == RANK` of the sorted list and runs on `cuda:LOCAL_RANK`.

Sharding is by position in the full, sorted image list (before skipping finished images), so
that it does not depend on which outputs exist when each process starts. Output folder names
come from the image names (`output_names`), so every image lands in the same place whichever
process handles it, and a rerun skips it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0  # this process's index
    world: int = 1  # number of processes
    local_rank: int | None = None  # GPU index on this host, when launched distributed

    def take(self, items: list[T]) -> list[T]:
        """Every world-th item starting at rank."""
        return items[self.rank :: self.world]


def shard_from_env() -> Shard:
    """The shard of this process from the variables accelerate/torchrun set (RANK, WORLD_SIZE,
    LOCAL_RANK); a single process when they are absent."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = os.environ.get("LOCAL_RANK")
        return Shard(rank, world, int(local) if local is not None else None) if world > 1 else Shard()
    except ValueError:
        return Shard()


def device_for(shard: Shard, requested: str) -> str:
    """`auto` becomes cuda:LOCAL_RANK in a distributed launch with CUDA; anything else is kept."""
    if requested != "auto" or shard.local_rank is None:
        return requested
    import torch

    return f"cuda:{shard.local_rank}" if torch.cuda.is_available() else "cpu"


# --- CPU worker pool ---------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(make: Callable[[], Any], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _worker["state"] = make()


def _run_job(job: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    fn, item = job
    return fn(_worker["state"], item)


def run_pool(make: Callable[[], Any], fn: Callable[[Any, T], Any], items: list[T], workers: int,
             threads: int) -> Iterator[tuple[T, Any]]:
    """Yield (item, fn(state, item)) as workers finish, each worker holding `make()` as state.

    make and fn must be picklable (module-level functions or functools.partial of them).
    workers == 1 runs in this process. fn should catch its own expected errors and return them.
    """
    if workers <= 1:
        state = make()
        for item in items:
            yield item, fn(state, item)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked OpenMP state
    per_worker = max(1, threads // workers)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(make, per_worker)) as pool:
        jobs = [(fn, item) for item in items]
        for item, result in zip(items, pool.imap(_run_job, jobs)):
            yield item, result
