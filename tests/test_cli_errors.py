"""Every command line ends in a result or one clear line: a bug is one line with status 1 (VITKIT_DEBUG=1
shows the traceback), and property-based tests over train / eval / predict / summary arguments never show one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability_helpers import FUZZ, assert_clear, call_cli, count, inputs, report_cases  # noqa: F401 (fixtures)
from test_training import TINY

pytestmark = pytest.mark.usefixtures("report_cases")  # prints the property-test case counts


def test_a_bug_is_one_line_with_status_1_and_vitkit_debug_shows_the_traceback(monkeypatch) -> None:
    import vitkit.analysis.summary
    import vitkit.cli as cli

    def broken_summary(*args, **kwargs):
        return {}["missing key"]  # a bug: KeyError, not a VitkitError

    monkeypatch.setattr(vitkit.analysis.summary, "summarize_model", broken_summary)
    monkeypatch.delenv("VITKIT_DEBUG", raising=False)
    status, stderr = call_cli(["summary", "vit_ti16"])
    assert status == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and "internal error: KeyError" in stderr
    assert "VITKIT_DEBUG=1" in stderr
    monkeypatch.setenv("VITKIT_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["summary", "vit_ti16"])




def _path_choices(p: dict[str, Path]) -> list[str]:
    return [str(p["data"]), str(p["data"] / "train"), str(p["root"] / "missing"), str(p["root"] / "empty"),
            str(p["root"] / "a_file.txt"), str(p["model"]), str(p["other_model"]), str(p["root"] / "junk.safetensors"),
            str(p["data"] / "val" / "circle" / "circle_0.png"), "", "-", "mnist-6k"]


TOKENS = ["0", "1", "2", "3", "-1", "0.5", "1e-3", "nan", "inf", "-inf", "1e9", "abc", "", "3x3", "vit_ti16",
          "bf16", "fp32", "fp16", "rrc", "shift", "center", "trivial", "randaugment", "none", "ï", "--"]
TRAIN_OPTIONS = ["--epochs", "--batch-size", "--accum-steps", "--lr", "--min-lr", "--weight-decay", "--warmup-epochs",
                 "--clip-grad", "--label-smoothing", "--precision", "--img-size", "--crop", "--augment", "--mixup",
                 "--cutmix", "--ema", "--seed", "--workers", "--val-fraction", "--time-limit", "--save-every",
                 "--max-bad-steps", "--drop-path", "--model", "--crop-scale"]
MODEL_ARGS = ["depth=0", "depth=1", "depth=-1", "depth=x", "dim=30", "dim=0", "heads=3", "heads=0", "patch_size=7",
              "patch_size=0", "patch_size=64", "image_size=30", "image_size=0", "num_classes=5", "foo=1", "nonsense",
              "pool=avg", "pool=weird", "=", "dim=[1,2]", "norm=post", "class_token=false"]


@given(data=st.data())
@FUZZ
def test_any_train_command_line_ends_in_a_run_or_one_clear_error(inputs, monkeypatch, data) -> None:
    from vitkit.train.loop import Trainer as RealTrainer

    monkeypatch.setattr(RealTrainer, "fit", lambda self, **k: {"interrupted": True})  # everything up to the loop
    argv = ["train", "--out", str(inputs["root"] / "runs" / "r"), "--workers", "1"]
    argv += ["--data", data.draw(st.sampled_from(_path_choices(inputs)))]
    argv += [x for kv in TINY.items() for x in ("--model-arg", f"{kv[0]}={kv[1]}")]
    for _ in range(data.draw(st.integers(0, 4))):
        kind = data.draw(st.sampled_from(["option", "model-arg", "flag", "resume", "init", "stray"]))
        if kind == "option":
            option = data.draw(st.sampled_from(TRAIN_OPTIONS))
            argv += [option] + [data.draw(st.sampled_from(TOKENS)) for _ in range(2 if option == "--crop-scale" else 1)]
        elif kind == "model-arg":
            argv += ["--model-arg", data.draw(st.sampled_from(MODEL_ARGS))]
        elif kind == "flag":
            argv.append(data.draw(st.sampled_from(["--no-flip", "--grad-checkpointing", "--fsdp", "--compile"])))
        elif kind in ("resume", "init"):
            argv += [f"--{kind}", data.draw(st.sampled_from(_path_choices(inputs)))]
        else:
            argv.append(data.draw(st.sampled_from(TOKENS)))
    if "--compile" in argv:  # compiling is minutes on this machine; it is not an input check
        argv.remove("--compile")
    status, stderr = call_cli(argv)
    count("train command lines")
    assert_clear(status, stderr, allowed=(0, 2, 130))


@given(data=st.data())
@FUZZ
def test_any_eval_predict_or_summary_command_line_ends_in_a_result_or_one_clear_error(inputs, data) -> None:
    paths = _path_choices(inputs)
    command = data.draw(st.sampled_from(["eval", "predict", "summary"]))
    if command == "eval":
        argv = ["eval", data.draw(st.sampled_from(paths)), "--data", data.draw(st.sampled_from(paths)),
                "--out", str(inputs["root"] / "eval_out")]
        if data.draw(st.booleans()):
            argv += ["--batch-size", data.draw(st.sampled_from(TOKENS))]
    elif command == "predict":
        argv = ["predict", data.draw(st.sampled_from(paths))]
        argv += data.draw(st.lists(st.sampled_from(paths), min_size=0, max_size=3))
        if data.draw(st.booleans()):
            argv += ["--top-k", data.draw(st.sampled_from(TOKENS))]
        if data.draw(st.booleans()):
            argv += ["--format", data.draw(st.sampled_from(["table", "json", "csv", "xml"]))]
    else:
        argv = ["summary", data.draw(st.sampled_from(["vit_ti16", "vit_b16", "vit_mnist", "vivit_b16x2", "nope", ""]))]
        if data.draw(st.booleans()):
            argv += ["--input-size", data.draw(st.sampled_from(["3x224x224", "3x1x1", "1x32x32", "3x16x224x224",
                                                                  "0x0x0", "3x100000x100000", "3x", "abc", "3x225x224"]))]
        if data.draw(st.booleans()):
            argv += ["--batch", data.draw(st.sampled_from(TOKENS))]
    status, stderr = call_cli(argv)
    count(f"{command} command lines")
    assert_clear(status, stderr, allowed=(0, 2))
    if command == "predict" and "none of the" in stderr:  # every file was unusable: each is named with its reason
        assert status == 2 and "warning: skipped" in stderr


def test_predict_on_only_unreadable_files_is_bad_input_status_2(inputs, tmp_path) -> None:
    broken = [tmp_path / "truncated.jpg", tmp_path / "empty.png"]
    broken[0].write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)  # a JPEG header and nothing after it
    broken[1].write_bytes(b"")
    status, stderr = call_cli(["predict", str(inputs["model"]), *map(str, broken)])
    assert status == 2, stderr
    assert_clear(status, stderr)
    assert all(path.name in stderr for path in broken) and "none of the 2 input files" in stderr
