"""The Python API from a real notebook, executed headless: dlexp.run, dlexp.sweep and dlexp.load in cells,
errors raised as exceptions with the command line's messages, no Hydra state left between cells."""
from __future__ import annotations

import json

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat and nbclient: pip install 'dlexp[dev]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient: pip install 'dlexp[dev]'")

CELLS = [
    "import json, os\nimport dlexp\nos.chdir({root!r})",
    "run = dlexp.run('trainer=smoke', 'trainer.progress=true', 'trainer.log_every_n_steps=1')\n"
    "print(json.dumps({{'status': run.status, 'epochs': len(run.metrics), 'dir': str(run.run_dir)}}))",
    "try:\n    dlexp.run('model=lenett')\nexcept Exception as err:\n"
    "    print(json.dumps({{'error': type(err).__name__, 'message': str(err)}}))",
    "sweep = dlexp.sweep('trainer=smoke', 'trainer.progress=false', 'optim.lr=0.003,0.01', sweep_name='nb')\n"
    "print(json.dumps({{'rows': len(sweep.table), 'jobs': len(sweep.jobs), 'lrs': sorted(sweep.table['optim.lr'].tolist())}}))",
    "again = dlexp.load(sweep.sweep_dir)\nrun_back = dlexp.load(run.run_dir)\n"
    "print(json.dumps({{'rows': len(again.table), 'test_acc': run_back.summary['test/acc'] == run.summary['test/acc']}}))",
    "from hydra.core.global_hydra import GlobalHydra\nfrom hydra.core.hydra_config import HydraConfig\n"
    "print(json.dumps({{'hydra_left': GlobalHydra.instance().is_initialized() or HydraConfig.initialized()}}))",
]


def _last_json(cell) -> dict:
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_the_api_in_a_notebook_executed_headless(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.format(root=str(tmp_path))) for c in CELLS])
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600).execute()
    cells = notebook.cells
    ran = _last_json(cells[1])
    assert ran["status"] == "completed" and ran["epochs"] == 2 and ran["dir"].startswith(str(tmp_path / "outputs"))
    drawn = "".join(o.get("text", "") for o in cells[1].outputs if o.get("name") == "stderr")
    widgets = [o for o in cells[1].outputs if o.get("output_type") == "display_data"]
    assert widgets or "loss" in drawn  # tqdm's widget (or its text bar), drawn in the cell
    refused = _last_json(cells[2])
    assert refused["error"] == "ConfigError" and refused["message"].startswith("unknown model 'lenett'. Did you mean 'lenet'?")
    swept = _last_json(cells[3])
    assert swept == {"rows": 2, "jobs": 2, "lrs": [0.003, 0.01]}
    assert _last_json(cells[4]) == {"rows": 2, "test_acc": True}
    assert _last_json(cells[5]) == {"hydra_left": False}
