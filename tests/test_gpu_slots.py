"""Several fits per GPU (#19 part 4): how many worker processes the engine starts with GPUs (GPUs x
LOGG_GPU_SLOTS, at most the cores), which card each worker is given, and the CLI's checks. No GPU is
needed: the device query is replaced; what a real card does with them is benchmarks/bench_gpu.py's."""
from __future__ import annotations

import pytest

from core import cli
from core.engine import executor, pool


def _gpus(monkeypatch, n: int, cores: int = 16):
    monkeypatch.setattr(executor, "gpu_count", lambda: n)
    monkeypatch.setattr(executor.os, "cpu_count", lambda: cores)


def test_workers_are_gpus_times_slots_bounded_by_the_cores(monkeypatch):
    monkeypatch.delenv("LOGG_GPU_SLOTS", raising=False)
    _gpus(monkeypatch, 0, cores=2)
    assert executor.default_workers() == 2                          # the CPU as before
    _gpus(monkeypatch, 1)
    assert executor.default_workers() == 1                          # one process owns the card by default
    monkeypatch.setenv("LOGG_GPU_SLOTS", "4")
    assert executor.default_workers() == 4
    _gpus(monkeypatch, 2)
    assert executor.default_workers() == 8
    _gpus(monkeypatch, 8, cores=16)
    assert executor.default_workers() == 16                         # never more processes than cores
    for bad in ("0", "two"):
        monkeypatch.setenv("LOGG_GPU_SLOTS", bad)
        with pytest.raises(ValueError, match="LOGG_GPU_SLOTS"):
            executor.gpu_slots()


def test_each_worker_gets_one_card_round_robin(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [pool.gpu_of_worker(k, 1) for k in range(3)] == [None, None, None]   # one card: the parent's view
    assert [pool.gpu_of_worker(k, 2) for k in range(5)] == ["0", "1", "0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")                # a parent limited to two cards hands out those
    assert [pool.gpu_of_worker(k, 2) for k in range(3)] == ["3", "5", "3"]


def test_the_worker_process_sees_only_its_card(monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, cmd, env=None, **kw):
            seen["env"] = env
            self.stdin = self.stdout = None
    monkeypatch.setattr(pool.subprocess, "Popen", FakePopen)
    pool._Worker(3, gpu="1")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "1" and seen["env"]["OMP_NUM_THREADS"] == "3"
    pool._Worker(3)
    assert seen["env"].get("CUDA_VISIBLE_DEVICES") == __import__("os").environ.get("CUDA_VISIBLE_DEVICES")


def test_the_cli_refuses_bad_slots_in_one_line_before_any_work(capsys, monkeypatch):
    called = []
    monkeypatch.setattr(cli, "_suite_specs", lambda a: called.append(a) or [])
    assert cli.main(["train", "--suite", "report", "--gpu-slots", "-2"]) == 2
    assert "--gpu-slots -2" in capsys.readouterr().err and not called
    assert cli.main(["train", "--suite", "report", "--gpu-slots", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert not called
