"""Heap tuning (``vitkit.fast.tune_allocator``, ``--heap``): what each goal does to page faults, its errors, the CLI.

The setting is process-wide, so every page-fault test runs in a fresh subprocess and the pytest process keeps
glibc's defaults.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from vitkit.errors import ConfigError
from vitkit.fast import resolve_heap, tune_allocator

PAGE = 4096
REPEATS = 30

# Allocate and free a block REPEATS times under a goal; report the minor page faults of each repeat.
_CHILD = """
import json, resource, sys
import torch
from vitkit.fast import tune_allocator

torch.set_num_threads(1)
goal, mib = sys.argv[1], int(sys.argv[2])
done = tune_allocator(goal)
faults = []
for _ in range({repeats}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(mib << 20, dtype=torch.uint8).fill_(1)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"done": done, "faults": faults}}))
""".format(repeats=REPEATS)

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="heap tuning acts on glibc only")


def faults_per_repeat(goal: str, mib: int) -> tuple[str, list[int]]:
    result = subprocess.run([sys.executable, "-c", _CHILD, goal, str(mib)], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return report["done"], report["faults"]


@glibc_only
def test_speed_reuses_freed_blocks_without_page_faults() -> None:
    # 48 MiB is above the most glibc's adaptive mmap threshold reaches (32 MiB on 64-bit): with glibc's defaults
    # every repeat maps and faults the block in again (checked by hand: 12,289 faults each time).
    done, faults = faults_per_repeat("speed", 48)
    pages = (48 << 20) // PAGE
    assert done.startswith("speed: glibc"), done
    # The first repeats may still grow the heap (seen: 1 to 7 extra blocks): torch asks for 64-byte-aligned
    # memory, and a freed aligned chunk is a little smaller than the next identical request until it has merged
    # with free neighbours. After that, nothing is faulted.
    settled = faults[10:]
    assert sum(settled) < 0.1 * pages, f"speed: {sum(settled)} faults in repeats 11-{REPEATS}, " \
                                       f"expected < {0.1 * pages:.0f} (per repeat: {faults})"


@glibc_only
def test_memory_returns_every_block_so_each_repeat_faults_it_in() -> None:
    # 16 MiB is below glibc's adaptive ceiling: with its defaults the block is kept after the first repeats.
    done, faults = faults_per_repeat("memory", 16)
    pages = (16 << 20) // PAGE
    assert done.startswith("memory: glibc"), done
    assert min(faults[1:]) >= 0.9 * pages, f"memory: a repeat faulted only {min(faults[1:])} of {pages} pages " \
                                           f"(per repeat: {faults})"


def test_unknown_goal_is_a_one_line_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError) as error:
        tune_allocator("fast")
    assert str(error.value) == "unknown heap goal 'fast': choose speed, memory, system"
    with pytest.raises(ConfigError, match="resolve_heap"):
        tune_allocator("auto")
    with pytest.raises(ConfigError, match="choose auto, speed, memory, system"):
        resolve_heap("fast", False)


def test_auto_is_memory_with_checkpointing_and_speed_without() -> None:
    assert resolve_heap("auto", True) == "memory"
    assert resolve_heap("auto", False) == "speed"
    assert resolve_heap("system", True) == "system"


def test_system_leaves_the_heap_as_it_is() -> None:
    assert tune_allocator("system").startswith("system")  # safe in this process: it calls no mallopt


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_cli_lists_heap_and_rejects_an_unknown_goal(command: str) -> None:
    shown = run_cli(command, "--help", timeout=120)
    assert shown.returncode == 0 and "--heap {auto,speed,memory,system}" in shown.stdout, shown.stdout
    wrong = run_cli(command, "--heap", "fast", timeout=120)
    assert wrong.returncode == 2 and "invalid choice: 'fast'" in wrong.stderr, wrong.stderr
