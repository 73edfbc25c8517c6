"""Chapter 10 (reproducing on a GPU) end to end on the CPU, and what it prints its figures with.

The recipe notebook runs top to bottom twice under nbclient with its ``REDO_CH10_*``
environment variables switched on: downloads from a local HTTP mirror on 127.0.0.1 that
serves Flowers-format fakes and a fabricated archive of the authors' weights, small
networks at 32 x 32, three seeds of a few iterations, one "Drive" folder and one "local
disk" folder under ``tmp_path``. During the first execution, seed 1's training is killed
(SIGKILL, as when a Colab session ends) once its first checkpoint has reached the Drive
folder: the notebook must report that seed as failed with one line and carry on with
seed 2. The local folder is then deleted (a new Colab session starts with an empty disk)
and the notebook runs again: the archives come from Drive (no second download), seed 1
resumes from its checkpoint on Drive, finished seeds are not trained again, and the
results table, read from the JSON files the runs wrote, counts three seeds.

The fakes are not the published files, so their checksums differ from the download
table's: the kernel replaces the table's Flowers checksums by the fakes' at start-up
(an IPython start-up file; nothing else is changed).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch

from tests.data_fakes import FakeServer, fake_flowers_source, fake_official_archive

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "10_reproducing_on_gpu.ipynb"
STEPS, CHECK_STEPS, SEEDS = 24, 4, "0,1,2"

STARTUP = '''\
# tests/test_chapter10.py: the fakes' checksums replace the published ones (for the fakes only)
import dataclasses, json
from redo_lib.data import download as _download
from redo_lib.data.sources import SOURCES as _SOURCES
_md5 = json.loads({md5!r})
_flowers = _SOURCES["flowers"]
_files = tuple(dataclasses.replace(f, md5=_md5[f.name], size=None) for f in _flowers.files)
_download.SOURCES = {{**_SOURCES, "flowers": dataclasses.replace(_flowers, files=_files)}}
'''


def outputs(notebook) -> str:
    """Every stream, text and Markdown output of the executed notebook, as one text."""
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(out["data"].get("text/markdown") or out["data"].get("text/plain", ""))
            elif out.get("output_type") == "error":
                parts.append("\n".join(out.get("traceback", [])))
    return "\n".join(parts)


def execute(path: Path, save_as: Path):
    """Execute the notebook in book/; the executed copy is written to ``save_as`` (to read on failure)."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    finally:
        nbformat.write(notebook, save_as)
    return notebook


def training_processes(seed: int, marker: str):
    """PIDs of the ``redo train`` processes of ``seed`` under ``marker`` (this test's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "train" in args and "--seed" in args and args[args.index("--seed") + 1] == str(seed) \
                and any(marker in a for a in args):
            found.append(int(entry.name))
    return found


class KillAfterFirstCheckpoint(threading.Thread):
    """Kill seed ``seed``'s training as soon as its first ``last.pt`` is on "Drive"."""

    def __init__(self, checkpoint: Path, seed: int, marker: str):
        super().__init__(daemon=True)
        self.checkpoint, self.seed, self.marker = checkpoint, seed, marker
        self.killed = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set() and not self.killed:
            if self.checkpoint.is_file():
                for pid in training_processes(self.seed, self.marker):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.005)


@pytest.mark.usefixtures("no_proxy")
def test_chapter10_runs_end_to_end_and_resumes_a_killed_seed(tmp_path, monkeypatch):
    if sys.platform != "linux":
        pytest.fail("this test finds the training process through /proc (Linux)")
    files, _source = fake_flowers_source(tmp_path / "source")
    archive_name, archive = fake_official_archive("flowers", "netM")
    server = FakeServer({**files, archive_name: archive})
    drive, local = tmp_path / "drive", tmp_path / "local"
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    md5 = {name: __import__("hashlib").md5(data).hexdigest() for name, data in files.items()}
    (startup / "00-fake-checksums.py").write_text(STARTUP.format(md5=json.dumps(md5)))
    for name, value in {
        "IPYTHONDIR": tmp_path / "ipython", "REDO_CH10_DRIVE": drive, "REDO_CH10_LOCAL": local,
        "REDO_CH10_MIRROR": server.url, "REDO_CH10_TRAIN": "1", "REDO_CH10_TINY": "1",
        "REDO_CH10_STEPS": STEPS, "REDO_CH10_CHECK_STEPS": CHECK_STEPS, "REDO_CH10_SEEDS": SEEDS,
        "REDO_CH10_TRAIN_ARGS": "--eval-every 2 --backup-every 1 --num-workers 0",
        "REDO_CH10_OFFICIAL_PART": "netM", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("REDO_FULL", raising=False)
    monkeypatch.delenv("REDO_DOWNLOAD", raising=False)
    runs = drive / "runs"
    try:
        # First session: seed 1 is killed after its first checkpoint reached Drive.
        killer = KillAfterFirstCheckpoint(runs / "flowers-seed1" / "last.pt", 1, str(tmp_path))
        killer.start()
        try:
            first = outputs(execute(NOTEBOOK, tmp_path / "first.ipynb"))
        finally:
            killer.stop.set()
            killer.join()
        assert killer.killed, "seed 1 finished before it could be killed: raise STEPS"
        status = {s: json.loads((runs / f"flowers-seed{s}" / "status.json").read_text()) for s in (0, 1, 2)}
        assert [status[s]["state"] for s in (0, 1, 2)] == ["finished", "failed", "finished"]
        assert status[1]["reason"].startswith("killed by signal 9")
        assert f"| 1 | failed | {status[1]['reached']} of 24 | killed by signal 9" in first
        assert "| 2 | finished | 24 of 24 |" in first
        assert f"first check: seed 0 at {CHECK_STEPS} iterations" in first
        assert "ours (2 of 3 seeds)" in first
        for gpu in ("T4", "A100", "H100 SXM"):
            assert f"| {gpu} |" in first
        assert "last.pt" in first and "GB" in first and "Colab sessions" in first
        # The archives are kept on Drive, the images extracted on the local disk.
        assert sorted(p.name for p in (drive / "data" / "flowers-archives").iterdir()) == [
            "102flowers.tgz", "102segmentations.tgz"]
        assert (local / "data" / "flowers" / "jpg").is_dir()
        assert not (drive / "data" / "flowers").exists()
        iem = json.loads((drive / "data" / "flowers_iem_test.json").read_text())
        authors = json.loads((drive / "data" / "official" / "flowers_netM_test.json").read_text())
        n_test = iem["n_images"]
        assert n_test > 0 and authors["n_images"] == n_test
        assert f"IEM on the flowers test split ({n_test} images, 32 px)" in first
        assert status[1]["reached"] < STEPS  # killed before the end (resumed from step > 0: below)

        # Second session: an empty local disk; everything comes back from Drive.
        import shutil

        shutil.rmtree(local)
        server.log.clear()
        second = outputs(execute(NOTEBOOK, tmp_path / "second.ipynb"))
        requested = [name for name, _range in server.log]
        assert "102flowers.tgz" not in requested and "102segmentations.tgz" not in requested
        assert "seed 0: finished earlier" in second and "seed 2: finished earlier" in second
        status = json.loads((runs / "flowers-seed1" / "status.json").read_text())
        assert status == {"seed": 1, "steps": STEPS, "reached": STEPS, "state": "finished", "reason": None}
        events = [json.loads(line) for line in (runs / "flowers-seed1" / "metrics.jsonl").read_text().splitlines()]
        resumed = [e for e in events if e.get("event") == "resume"]
        assert resumed and resumed[-1]["step"] > 0  # from the checkpoint on Drive, not from scratch
        assert max(e["step"] for e in events if "iou" in e) == STEPS
        assert "ours (3 of 3 seeds)" in second and "| 1 | finished | 24 of 24 |" in second
        scores = [json.loads((runs / f"flowers-seed{s}" / "test.json").read_text()) for s in (0, 1, 2)]
        assert all(s["n_images"] == n_test for s in scores)
        assert "Traceback" not in first + second
    finally:
        server.close()


# ---------------------------------------------------------------- redo_lib.gpu_estimate
TINY = dict(image_size=32, nf_mask=8, n_res_mask=1, nf_gen=4, nf_disc=4, nf_info=4, nz=8,
            pyramid_pooling="adaptive", self_attention_gen=False, self_attention_disc=False)


def test_iteration_counts_are_linear_in_the_batch_size():
    from redo_lib.gpu_estimate import count_iterations, iteration_cost

    c1, c2, c3 = count_iterations("flowers", (1, 2, 3), overrides=TINY)
    assert c1["flops"] > 0 and c3["flops"] - c2["flops"] == c2["flops"] - c1["flops"]  # exactly linear
    for key in ("saved_g", "saved_d"):  # storage sizes: linear to within a few per cent at this size
        assert c1[key] > 0
        assert c3[key] - c2[key] == pytest.approx(c2[key] - c1[key], rel=0.05), key
    cost = iteration_cost("flowers", 3, overrides=TINY)  # extended from batch 1 and 2
    assert cost.flops == c3["flops"]
    assert cost.saved_bytes == pytest.approx(max(c3["saved_g"], c3["saved_d"]), rel=0.02)
    assert cost.state_bytes == 16 * c1["n_parameters"] and cost.image_size == 32


def test_saved_bytes_count_activations_once_and_not_parameters():
    from redo_lib.gpu_estimate import _SavedBytes

    layer = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4, requires_grad=True)
    counter = _SavedBytes(list(layer.parameters()))
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        y = layer(x)
        z = (y * y).sum()  # y saved twice by mul: counted once
        with torch.no_grad():
            torch.relu(x * 2)  # no graph: nothing saved
    assert counter.close() == 5 * 4 * 4 + 5 * 3 * 4  # x for the weight gradient, y for y * y
    z.backward()


def test_floors_and_sessions():
    from redo_lib.gpu_estimate import GPUS, IterationCost, gpu_floors, sessions_needed

    cost = IterationCost("flowers", 20, 128, 10**8, flops=6.5e12, saved_bytes=5e9, state_bytes=1.6e9,
                         per_image_flops=3.25e11, per_image_saved_bytes=2.5e8, counted_at=(1, 2))
    rows = {row["gpu"]: row for row in gpu_floors(cost, 3600)}
    assert [g.name for g in GPUS] == ["T4", "A100", "H100 SXM"]
    assert rows["T4"]["amp_s_per_it"] == pytest.approx(0.1)  # 6.5e12 / 65e12
    assert rows["T4"]["amp_run_hours"] == pytest.approx(0.1)
    assert rows["H100 SXM"]["fp32_s_per_it"] == pytest.approx(6.5e12 / 67e12)
    assert [row["fits_gb"] for row in rows.values()] == [(16.0,), (40.0, 80.0), (80.0,)]
    big = IterationCost("flowers", 20, 128, 10**8, 1.0, 45e9, 1.6e9, 1.0, 1.0, (1, 2))
    assert {r["gpu"]: r["fits_gb"] for r in gpu_floors(big, 1)} == {"T4": (), "A100": (80.0,), "H100 SXM": (80.0,)}
    assert sessions_needed(1.0, 12 * 3600, 1) == 1 and sessions_needed(1.0, 12 * 3600, 5) == 5
    assert sessions_needed(0.01, 20000, 5) == 1
    with pytest.raises(ValueError):
        sessions_needed(0, 1, 1)


# ---------------------------------------------------------------- the explorer on Colab
def test_explorer_switches_on_colabs_widget_manager(monkeypatch):
    import types

    from redo_lib import explorer

    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("enabled"))
    colab = types.ModuleType("google.colab")
    colab.output = output
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert explorer.enable_colab_widgets() is False and calls == []  # not on Colab: nothing
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    assert explorer.enable_colab_widgets() is True and calls == ["enabled"]
    explorer._import_widgets()  # what Explorer.widget() calls first
    assert calls == ["enabled", "enabled"]
