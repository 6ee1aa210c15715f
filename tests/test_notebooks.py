"""The Colab notebooks (colab/*.ipynb) run top to bottom in a Python kernel of this environment.

Each notebook is executed with nbclient as Colab's "Run all" would, with the defaults of its
`parameters` cell except where the repository and the run folder lie (and, for evaluate and predict,
the student the train notebook exported, so that it is trained once). Outside Colab the install,
upload and TensorBoard cells do nothing, so this checks every other cell on the tiny configs and the
embedded corpus: no cell raises, and each notebook leaves the artifacts its last cells show.
"""
import json
import os
import sys

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLAB = os.path.join(REPO, "colab")
NOTEBOOKS = ("01_train_student_tpu", "02_label_face_tracks", "03_evaluate", "04_predict")
CELL_TIMEOUT_S = 600


def _kernel_dir(tmp_path_factory) -> str:
    """A Jupyter data folder whose 'python3' kernel is this interpreter: a kernelspec in the user's
    folder (another environment's) must not run the notebooks."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)", "language": "python"}))
    return str(root)


@pytest.fixture(scope="module")
def run_notebook(tmp_path_factory, synthetic_cache):
    """run_notebook(name, **parameters) -> (executed notebook, its WORKDIR): `parameters` are set in a
    cell right after the notebook's own `parameters` cell (as papermill injects them)."""
    jupyter_dir = _kernel_dir(tmp_path_factory)
    env = {"JUPYTER_PATH": jupyter_dir, "CMEMO_CACHE": synthetic_cache, "MPLBACKEND": "Agg"}

    def run(name: str, **parameters):
        workdir = str(tmp_path_factory.mktemp(name))
        nb = nbformat.read(os.path.join(COLAB, f"{name}.ipynb"), as_version=4)
        at = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(at) == 1, f"{name}: expected one cell tagged 'parameters', found {len(at)}"
        values = {"REPO_DIR": REPO, "WORKDIR": os.path.join(workdir, "run"), **parameters}
        injected = "\n".join(f"{k} = {v!r}" for k, v in values.items())
        nb.cells.insert(at[0] + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)   # the kernel inherits this process's environment
        try:
            client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                             resources={"metadata": {"path": workdir}})
            client.execute()   # raises CellExecutionError naming the cell and its traceback
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return nb, values["WORKDIR"]

    return run


def _outputs_text(nb) -> str:
    return "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def test_every_notebook_has_parameters_and_is_listed_in_the_readme():
    readme = open(os.path.join(COLAB, "README.md")).read()
    found = sorted(f[:-len(".ipynb")] for f in os.listdir(COLAB) if f.endswith(".ipynb"))
    assert found == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(os.path.join(COLAB, f"{name}.ipynb"), as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: saved outputs"
        assert f"{name}.ipynb" in readme


@pytest.fixture(scope="module")
def trained_student(run_notebook):
    nb, workdir = run_notebook("01_train_student_tpu")
    return nb, workdir


def test_train_notebook_exports_the_student_and_plots_its_curves(trained_student):
    nb, workdir = trained_student
    assert os.path.exists(os.path.join(workdir, "student.msgpack"))
    assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
    text = _outputs_text(nb)
    assert "cpu: " in text and "exported" in text
    assert _images(nb) >= 1


def test_label_notebook_writes_records_and_the_emotion_histogram(run_notebook):
    nb, workdir = run_notebook("02_label_face_tracks")
    records = os.path.join(workdir, "records")
    assert os.path.exists(os.path.join(records, "dataset_info.json")), os.listdir(workdir)
    assert any(f.endswith(".tfrecord") or "tfrecord" in f for f in os.listdir(records))
    assert os.path.exists(os.path.join(workdir, "teacher", "teacher.msgpack"))
    assert _images(nb) >= 1
    assert "records: " + records in _outputs_text(nb)


def test_evaluate_notebook_reports_the_tables_for_the_trained_student(run_notebook, trained_student):
    _, student_workdir = trained_student
    student = os.path.join(student_workdir, "student.msgpack")
    nb, workdir = run_notebook("03_evaluate", STUDENT_MODEL=student)
    with open(os.path.join(workdir, "results", "results.json")) as f:
        results = json.load(f)
    assert results, "empty results.json"
    assert not os.path.exists(os.path.join(workdir, "student")), "trained a student although one was given"
    assert os.path.isdir(os.path.join(workdir, "acted", "rml"))
    assert any(out.get("data", {}).get("text/markdown") for c in nb.cells if c.cell_type == "code"
               for out in c.get("outputs", []))
    assert _images(nb) >= 1


def test_predict_notebook_plots_emotion_over_the_example_recording(run_notebook, trained_student):
    _, student_workdir = trained_student
    nb, workdir = run_notebook("04_predict", STUDENT_MODEL=os.path.join(student_workdir, "student.msgpack"))
    assert os.path.getsize(os.path.join(workdir, "prediction.png")) > 0
    assert os.path.exists(os.path.join(workdir, "acted_sequence.wav"))
    text = _outputs_text(nb)
    assert "whole file:" in text and "happiness 0.6-" in text
    assert _images(nb) == 1
