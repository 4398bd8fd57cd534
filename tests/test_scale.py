"""Scale on the CPU: bf16 autocast, torch.compile, and torchrun with 2 processes over gloo (each torchrun
test starts its processes: ``services``, outside the fast tier)."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import read_json, untimed_rows
from datafiles import write_arrays

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in untimed_rows(run_dir)]


def test_bf16_autocast_trains_on_the_cpu(run_train):
    result, run_dir = run_train("trainer.precision=bf16", "trainer.epochs=3", "trainer.checkpoints=false")
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["test/acc"] > 0.6  # 10 classes: chance is 0.1
    assert all(row["train/loss"] == row["train/loss"] for row in _metrics(run_dir))  # no NaN


def test_float16_needs_a_gpu(run_train):
    from dlexp.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.precision=16 .* needs a GPU; on the CPU use trainer.precision=bf16"):
        run_train("trainer.precision=16", "trainer.device=cpu")


@pytest.mark.slow  # torch.compile's code generation
def test_a_compiled_run_saves_the_raw_model_and_resumes_without_compiling(run_train, tmp_path):
    common = ["model.hidden=[16]", "model.dropout=0", "trainer.limit_train_batches=3", "trainer.early_stopping.patience=null"]
    run_train("trainer.compile=true", "trainer.epochs=1", *common)
    run_dir = tmp_path / "run"
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and not any(k.startswith(("_orig_mod.", "module.")) for k in state["model"])
    layers = {row["layer"] for row in csv.DictReader(open(run_dir / "grad_norms.csv"))}
    assert layers == {"1", "3"}  # the MLP's two Linear layers, named as in the raw model
    result, _ = run_train(f"resume={run_dir}", "trainer.compile=false", "trainer.epochs=2", *common, run_dir=run_dir)
    assert read_json(run_dir / "summary.json")["epochs_run"] == 2 and len(_metrics(run_dir)) == 2


@pytest.fixture
def arrays_file(tmp_path):
    return write_arrays(tmp_path / "a.npz", n=100, seed=1, extra=("test",))


def _common(path: Path, *extra: str) -> list[str]:
    # no dropout: its masks differ per rank by design
    return [f"dataset.path={path}", "dataset=arrays", "model=mlp", "model.hidden=[16]", "model.dropout=0", "optim=sgd", "optim.lr=0.1",
            "trainer.batch_size=16", "trainer.early_stopping.patience=null", "trainer.progress=false",
            "trainer.num_threads=1", *extra]


def _env() -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DLEXP_TRACEBACK", None)
    return env


@pytest.mark.services
def test_two_processes_train_exactly_like_one_at_the_same_global_batch(arrays_file, tmp_path):
    args = _common(arrays_file, "trainer.epochs=3")
    one = subprocess.run([sys.executable, "-m", "dlexp", *args, "hydra.run.dir=one"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*TORCHRUN, "-m", "dlexp", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr
    runs = list((tmp_path / "outputs").rglob("summary.json"))
    assert len(runs) == 1 and len(list((tmp_path / "outputs").rglob("metrics.csv"))) == 1  # rank 0 chose one dir
    two_dir = runs[0].parent
    for a, b in zip(_metrics(tmp_path / "one"), _metrics(two_dir), strict=True):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4) for k in a)
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    w2 = torch.load(two_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6) for k in w1)
    assert two.stdout.count("Run summary") == 1  # only rank 0 prints


@pytest.mark.services
def test_two_nodes_of_one_process_train_exactly_like_one_process(arrays_file, tmp_path):
    """Multi-node torchrun on localhost: 2 nodes x 1 process, c10d rendezvous, one launcher per node (as a
    SLURM job script starts them), against 1 process at the same global batch: the same metrics and weights,
    one run dir."""
    from services import free_port

    args = _common(arrays_file, "trainer.epochs=2")
    one = subprocess.run([sys.executable, "-m", "dlexp", *args, "hydra.run.dir=one"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    port = free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
         "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=dlexp-two-nodes",
         "-m", "dlexp", *args], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err for _, err in outputs]
    runs = list((tmp_path / "outputs").rglob("summary.json"))
    assert len(runs) == 1 and len(list((tmp_path / "outputs").rglob("metrics.csv"))) == 1  # one run dir for both nodes
    two_dir = runs[0].parent
    assert read_json(runs[0])["status"] == "completed"
    for a, b in zip(_metrics(tmp_path / "one"), _metrics(two_dir), strict=True):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4) for k in a)
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    w2 = torch.load(two_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6) for k in w1)
    assert sum(out.count("Run summary") for out, _ in outputs) == 1  # only the global rank 0 prints


@pytest.mark.services
def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(arrays_file, tmp_path):
    proc = subprocess.run([*TORCHRUN, "-m", "dlexp", *_common(arrays_file, "trainer.batch_size=15")], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "trainer.batch_size=15 is the global batch and must divide evenly over the 2 processes" in proc.stderr


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.services
def test_killing_one_rank_fails_the_job_and_leaves_a_resumable_checkpoint(arrays_file, tmp_path):
    args = _common(arrays_file, "trainer.epochs=400", "hydra.run.dir=run")
    job = subprocess.Popen([*TORCHRUN, "-m", "dlexp", *args], cwd=tmp_path, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):  # two finished epochs
        assert job.poll() is None and time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.2)
    workers = _children(job.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=180)  # the agent stops the other rank: no hang
    assert job.returncode != 0 and "SIGKILL" in stderr
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] >= 1 and state["world_size"] == 2
    resumed = subprocess.run([*TORCHRUN, "-m", "dlexp", "resume=run", f"trainer.epochs={state['epoch'] + 1}"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert read_json(tmp_path / "run" / "summary.json")["epochs_run"] == state["epoch"] + 1
    one = subprocess.run([sys.executable, "-m", "dlexp", "resume=run", f"trainer.epochs={state['epoch'] + 2}"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode != 0 and "trained by 2 process(es) and cannot continue with 1" in one.stderr


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_fused_optimizer_is_fused_in_every_group_and_steps_under_a_grad_scaler(name):
    """On CUDA every optimizer that has fused kernels is rebuilt with fused=True. Each param group must
    take it (a group's own copy of fused=None would win, and float16's GradScaler would then hand
    grad_scale to the multi-tensor path, which refuses it). PyTorch's fused kernels also run on the CPU."""
    from dlexp.training.optim import OPTIMIZERS, _fused_on_cuda

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    groups = [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 0.1},
              {"params": [p for p in model.parameters() if p.ndim == 1], "weight_decay": 0.0}]
    optimizer = _fused_on_cuda(OPTIMIZERS.build(name, groups, lr=0.01))
    assert [g["fused"] for g in optimizer.param_groups] == [True, True]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]  # the groups' own settings stay
    scaler = torch.amp.GradScaler("cpu")
    before = [p.detach().clone() for p in model.parameters()]
    scaler.scale(model(torch.randn(8, 4)).square().mean()).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["rmsprop", "adagrad"])  # Adagrad's fused kernel is CPU-only
def test_optimizers_without_fused_cuda_kernels_are_kept_as_built(name):
    from dlexp.training.optim import OPTIMIZERS, _fused_on_cuda

    optimizer = OPTIMIZERS.build(name, [torch.nn.Parameter(torch.zeros(2))], lr=0.01)
    assert _fused_on_cuda(optimizer) is optimizer
