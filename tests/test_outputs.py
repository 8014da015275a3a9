"""No command writes over a file the user did not ask it to replace, and written files get normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import run_cli
from test_training import TINY, make_folder, tiny_config
from vitkit.errors import VitkitError
from vitkit.models import create_model
from vitkit.outputs import RUN_FILES, claim_run_folder, refuse_existing, refuse_non_empty
from vitkit.store import atomic_write, atomic_write_json, save_model
from vitkit.train.checkpoint import has_checkpoint
from vitkit.train.loop import Trainer, train


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show that nothing was touched)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A model folder as `vitkit convert` or `store.save_model` writes it: no checkpoints/, no training run."""
    return save_model(tmp_path / "converted", create_model("vit_ti16", **TINY, num_classes=2), class_names=["a", "b"])


# --- train -------------------------------------------------------------------------------------------------

def test_training_into_a_converted_model_folder_is_refused_and_leaves_it_byte_identical(tmp_path, model_folder):
    data = make_folder(tmp_path / "shapes", per_class=4)
    before = snapshot(model_folder)
    with pytest.raises(VitkitError, match=r"converted is not empty .*config.json.*another --out.*--overwrite"):
        Trainer(tiny_config(data, model_folder, epochs=1))
    result = run_cli("train", "--data", str(data), "--out", str(model_folder), "--epochs", "1", timeout=300)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--overwrite" in result.stderr, result.stderr
    assert snapshot(model_folder) == before


def test_any_non_empty_out_is_refused_but_an_empty_one_is_used(tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(VitkitError, match="todo.txt"):
        claim_run_folder(tmp_path / "notes", overwrite=False)
    (tmp_path / "empty").mkdir()
    claim_run_folder(tmp_path / "empty", overwrite=False)
    claim_run_folder(tmp_path / "absent", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(VitkitError, match="is a file"):
        claim_run_folder(tmp_path / "file", overwrite=True)


def test_overwrite_replaces_an_earlier_run_and_keeps_other_files_and_resume_still_works(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes", per_class=4)
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1, batch_size=4, augment="none"))
    (run / "my_notes.txt").write_text("mine")
    with pytest.raises(VitkitError, match=f"already holds a run; continue it with --resume {run}"):
        Trainer(tiny_config(data, run, epochs=1))
    stale = run / "checkpoints" / "step-000999999"
    stale.mkdir()  # an earlier run's checkpoint further along than the new run: it must not survive
    train(tiny_config(data, run, epochs=2, batch_size=4, augment="none"), overwrite=True, stop_after_steps=3)
    assert (run / "my_notes.txt").read_text() == "mine", "--overwrite removes only the files a run writes"
    assert not stale.exists() and not (run / "summary.json").exists()
    summary = train(tiny_config(data, run, epochs=2, batch_size=4, augment="none"), resume=True)
    assert summary["epochs_done"] == 2 and has_checkpoint(run)


def test_run_files_are_what_a_run_writes(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes", per_class=4)
    train(tiny_config(data, tmp_path / "run", epochs=1, batch_size=4, augment="none"))
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert written <= set(RUN_FILES), written - set(RUN_FILES)


# --- convert, export, eval, explain -------------------------------------------------------------------------

def test_the_helpers_refuse_existing_files_unless_told() -> None:
    here = Path(__file__)
    with pytest.raises(VitkitError, match=f"{here.name} already exists; pass --overwrite to replace it"):
        refuse_existing([here.parent / "absent.png", here], overwrite=False)
    refuse_existing([here], overwrite=True)
    with pytest.raises(VitkitError, match="is not empty"):
        refuse_non_empty(here.parent, overwrite=False, flag="output")
    refuse_non_empty(here.parent / "absent", overwrite=False)


def test_convert_onto_an_existing_folder_is_refused_unless_overwrite(tmp_path, model_folder) -> None:
    target = tmp_path / "target"
    save_model(target, create_model("vit_ti16", **TINY, num_classes=3))
    before = snapshot(target)
    refused = run_cli("convert", str(model_folder), "--to", "vitkit", str(target), timeout=300)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr, refused.stderr
    assert snapshot(target) == before
    done = run_cli("convert", str(model_folder), "--to", "vitkit", str(target), "--overwrite", timeout=300)
    assert done.returncode == 0, done.stderr
    assert (target / "model.safetensors").read_bytes() == (model_folder / "model.safetensors").read_bytes()


def test_export_onto_an_existing_file_is_refused_unless_overwrite(tmp_path, model_folder) -> None:
    out = tmp_path / "model.pt2"
    out.write_bytes(b"someone's file")
    refused = run_cli("export", str(model_folder), "--format", "pt2", "--out", str(out), timeout=300)
    assert refused.returncode == 2 and "already exists" in refused.stderr, refused.stderr
    assert out.read_bytes() == b"someone's file"
    done = run_cli("export", str(model_folder), "--format", "pt2", "--out", str(out), "--overwrite", timeout=300)
    assert done.returncode == 0 and out.read_bytes() != b"someone's file", done.stderr


def test_eval_and_explain_refuse_to_replace_their_reports_unless_overwrite(tmp_path, model_folder) -> None:
    data = make_folder(tmp_path / "shapes", per_class=4, classes=("a", "b"), modes=False)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    refused = run_cli("eval", str(model_folder), "--data", str(data), "--out", str(out), timeout=300)
    assert refused.returncode == 2 and "metrics.json already exists" in refused.stderr, refused.stderr
    assert (out / "metrics.json").read_text() == "{}"
    done = run_cli("eval", str(model_folder), "--data", str(data), "--out", str(out), "--overwrite", timeout=300)
    assert done.returncode == 0 and (out / "metrics.json").read_text() != "{}", done.stderr

    image = next((data / "val" / "a").iterdir())
    figure = tmp_path / "fig" / f"{image.stem}.rollout.png"
    figure.parent.mkdir()
    figure.write_bytes(b"a figure of mine")
    refused = run_cli("explain", str(model_folder), str(image), "--out", str(figure.parent), timeout=300)
    assert refused.returncode == 2 and "already exists" in refused.stderr, refused.stderr
    assert figure.read_bytes() == b"a figure of mine"
    done = run_cli("explain", str(model_folder), str(image), "--out", str(figure.parent), "--overwrite", timeout=300)
    assert done.returncode == 0 and figure.read_bytes().startswith(b"\x89PNG"), done.stderr


# --- permissions ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomically_written_files_get_the_umask_permissions_as_open_would(tmp_path, umask, mode) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "config.json", {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("reference")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file is left"


def test_replacing_a_file_keeps_its_mode(tmp_path) -> None:
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o664)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o664
