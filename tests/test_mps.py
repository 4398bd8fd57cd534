"""Apple's GPU (MPS), with MPS reported available by the test (no Apple hardware here): trainer.device=auto picks
CUDA, else MPS, else the CPU; trainer.device=mps is accepted; what dlexp does not run on MPS is refused in one
line; a checkpoint moves between MPS, CUDA and the CPU (its tensors load onto the CPU, each device's RNG
stream is restored only where that device is)."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg
from dlexp.errors import ConfigError
from dlexp.training import runtime


@pytest.fixture
def mps_here(monkeypatch):
    """MPS reported available, CUDA not; the MPS RNG stream kept in a list."""
    streams = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: streams[-1].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: streams.append(state.clone()))
    return streams


def _trainer(*overrides: str):
    return OmegaConf.structured(compose_cfg(*overrides).trainer)


def test_auto_picks_mps_when_there_is_no_cuda_and_mps_is_accepted(mps_here):
    assert runtime.resolve_device("auto") == torch.device("mps")
    assert runtime.resolve_device("mps") == torch.device("mps")
    made = runtime.setup_runtime(_trainer("trainer.device=auto"))
    assert made.device.type == "mps" and made.describe().startswith("mps (Apple's GPU)") and made.check_every == 50
    assert runtime.resolve_device("auto", local_rank=0) == torch.device("cpu")  # torchrun: never MPS


def test_auto_prefers_cuda_and_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")


def test_mps_without_apple_silicon_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^trainer.device=mps but Apple's GPU \(MPS\) is not available here"):
        runtime.resolve_device("mps")


@pytest.mark.parametrize("setting, says", [
    ("trainer.precision=16", "trainer.precision=16 on mps"),
    ("trainer.precision=bf16", "trainer.precision=bf16 on mps"),
    ("trainer.compile=true", "trainer.compile=True on mps"),
    ("trainer.compile=reduce-overhead", "trainer.compile=reduce-overhead on mps"),
])
def test_what_mps_lacks_is_refused_in_one_line(mps_here, setting, says):
    with pytest.raises(ConfigError) as refused:
        runtime.setup_runtime(_trainer("trainer.device=mps", setting))
    assert str(refused.value).startswith(says) and "\n" not in str(refused.value)


def test_torchrun_on_mps_is_refused(mps_here):
    with pytest.raises(ConfigError, match="^torchrun on mps"):
        runtime.setup_runtime(_trainer("trainer.device=mps"), ranks=(0, 2, 0))


def test_a_run_refused_on_mps_writes_nothing(mps_here, tmp_path, monkeypatch, capfd):
    from conftest import cli_in_process

    monkeypatch.chdir(tmp_path)
    proc = cli_in_process("dlexp", ["trainer=smoke", "trainer.device=mps", "trainer.precision=bf16"], capfd)
    assert proc.returncode == 2 and "trainer.precision=bf16 on mps" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_checkpoint_moves_between_mps_cuda_and_the_cpu(mps_here, tmp_path, monkeypatch):
    from dlexp.runs.checkpoint import load_checkpoint, save_checkpoint

    state = runtime.capture_rng()  # on a machine with MPS: its stream is in the checkpoint
    assert torch.equal(state["mps"], torch.tensor([1, 2, 3], dtype=torch.uint8)) and "cuda" not in state
    state["cuda"] = [torch.tensor([9], dtype=torch.uint8)]  # as if written on a CUDA machine too
    save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.ones(2)}, "rng": state})
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["model"]["w"].device.type == "cpu"  # every tensor onto the CPU, whichever device wrote it
    runtime.restore_rng(loaded["rng"])  # on MPS: the MPS stream comes back, the CUDA one is skipped
    assert torch.equal(mps_here[-1], torch.tensor([1, 2, 3], dtype=torch.uint8))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    runtime.restore_rng(loaded["rng"])  # on the CPU: both skipped, the CPU's own restored
    assert len(mps_here) == 2
