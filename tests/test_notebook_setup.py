"""`course.notebook.setup`, the first cell of every lesson: its choice of CPU threads.

Lessons 04 and 06 used to call `torch.set_num_threads(1)` themselves and 07-09 did not; on a
shared 2-core machine the latter ran many times slower (oversubscription). `setup()` now
chooses for every lesson through `use_notebook_threads`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import course.notebook as nb
from course.errors import ConfigError


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    """Every test starts without OMP_NUM_THREADS and leaves torch's thread count as it was."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 2), (4, 3), (5, 4), (64, 4)])
def test_default_leaves_a_cpu_free_and_is_capped(monkeypatch, cpus, expected):
    monkeypatch.setattr(nb, "available_cpus", lambda: cpus)
    assert nb.use_notebook_threads() == expected
    assert torch.get_num_threads() == expected


def test_setup_limits_threads_on_a_shared_two_cpu_machine(monkeypatch):
    """What lessons 07-09 lacked: the first cell alone brings a 2-CPU machine down to 1 thread."""
    monkeypatch.setattr(nb, "available_cpus", lambda: 2)
    torch.set_num_threads(2)  # torch's own default there
    nb.setup(seed=0)
    assert torch.get_num_threads() == 1


def test_explicit_argument_wins_over_everything(monkeypatch):
    monkeypatch.setattr(nb, "available_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb.setup(seed=0, threads=3)
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("value, expected", [("3", 3), ("6", 6), ("2,1", 2), (" 2 ", 2)])
def test_omp_num_threads_is_respected_uncapped(monkeypatch, value, expected):
    monkeypatch.setattr(nb, "available_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert nb.use_notebook_threads() == expected == torch.get_num_threads()


@pytest.mark.parametrize("value", ["", "0", "-2", "many"])
def test_unusable_omp_num_threads_falls_back_to_the_default(monkeypatch, value):
    monkeypatch.setattr(nb, "available_cpus", lambda: 3)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert nb.use_notebook_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_threads_argument_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        nb.use_notebook_threads(bad)


def test_available_cpus_follows_affinity_and_cgroup_quota(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(nb, "_cgroup_cpu_quota", lambda: None)
    assert nb.available_cpus() == 16
    monkeypatch.setattr(nb, "_cgroup_cpu_quota", lambda: 2)  # e.g. Binder, docker --cpus=2
    assert nb.available_cpus() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert nb.available_cpus() == 1


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert nb._cgroup_cpu_quota(v2) == 2  # 1.5 CPUs, rounded up
    (v2 / "cpu.max").write_text("max 100000\n")
    assert nb._cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert nb._cgroup_cpu_quota(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert nb._cgroup_cpu_quota(v1) is None
    assert nb._cgroup_cpu_quota(tmp_path / "none") is None


def test_a_fresh_kernel_process_gets_the_chosen_count():
    """The real first cell, in a new interpreter: torch's pool is resized before any work."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = ("import torch\nfrom course.notebook import available_cpus, setup\nsetup(seed=0)\n"
            "print(torch.get_num_threads(), available_cpus())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    threads, cpus = int(out[0]), int(out[1])
    assert threads == max(1, min(nb.MAX_NOTEBOOK_THREADS, cpus - 1))
