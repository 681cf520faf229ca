"""The notebook's own test: papermill executes it here with typed parameters, as a job would."""

import json
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "train.ipynb"


def test_the_notebook_trains_with_injected_parameters(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.delenv("FAHR_EXECUTION_ENVIRONMENT", raising=False)
    shutil.copy(NOTEBOOK, tmp_path / "train.ipynb")
    papermill.execute_notebook(str(tmp_path / "train.ipynb"), str(tmp_path / "executed.ipynb"),
                               parameters={"epochs": 3, "alpha": 0.001}, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["epochs"] == 3 and metrics["types"]["epochs"] == "int"
    assert metrics["accuracy"] > 0.8
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "epochs = 3" in "".join(injected[0]["source"])


def test_an_input_channel_it_does_not_read_stops_it_instead_of_training_on_the_digits(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.delenv("FAHR_EXECUTION_ENVIRONMENT", raising=False)
    shutil.copy(NOTEBOOK, tmp_path / "train.ipynb")
    (tmp_path / "data" / "training").mkdir(parents=True)  # here, ./data/CHANNEL stands for a job's channel
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        papermill.execute_notebook(str(tmp_path / "train.ipynb"), str(tmp_path / "executed.ipynb"),
                                   parameters={"epochs": 3}, kernel_name="python3", cwd=str(tmp_path),
                                   progress_bar=False)
    assert failed.value.ename == "ValueError"
    assert "got input channels 'training'; this notebook reads only 'train'" in failed.value.evalue
    assert not (tmp_path / "model").exists()


def test_the_parameters_cell_is_tagged():
    nb = json.loads(NOTEBOOK.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and "epochs = " in "".join(tagged[0]["source"])
