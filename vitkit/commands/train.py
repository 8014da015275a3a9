"""``vitkit train``, ``vitkit eval`` and ``vitkit predict``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .args import HEAP_HELP as heap_help, positive_int, tune_heap

# CLI option -> TrainConfig field; every option defaults to None so that "not given" is visible and an
# embedded dataset's recipe (or the config defaults) fills the rest. The help shows the effective default
# (see _default_text).
_OPTIONS: list[tuple[str, type, str]] = [
    ("--task", str, "image (image folders, a ViT), video (folders of video files, a ViViT model) or segmentation3d "
                    "(indoor scans: indoor-rooms, S3DIS or ScanNet folders, a Swin3D model)"),
    ("--model", str, "model name (see `vitkit models`)"),
    ("--init", str, "start from pretrained weights: a run folder, a file, timm:NAME or hf:ORG/NAME "
                    "(default: random initialisation)"),
    ("--out", str, "run folder to create; it must be absent or empty (default: runs/<data>-<model>)"),
    ("--epochs", positive_int, "training epochs"),
    ("--batch-size", positive_int, "images per optimiser step (the global batch under torchrun)"),
    ("--accum-steps", positive_int, "split each batch into this many micro-batches (gradient accumulation)"),
    ("--lr", float, "peak learning rate"),
    ("--min-lr", float, "final learning rate of the cosine schedule"),
    ("--weight-decay", float, "AdamW weight decay (not applied to norms, biases, pos-embed, [CLS])"),
    ("--warmup-epochs", float, "linear warmup length in epochs"),
    ("--clip-grad", float, "gradient-norm clipping (0: off)"),
    ("--label-smoothing", float, "label smoothing"),
    ("--precision", str, "auto (bf16 where it is measured faster than fp32 on this machine), bf16 (autocast) or fp32"),
    ("--img-size", positive_int, "training resolution (default: the model's)"),
    ("--crop", str, "rrc (random resized crop), shift (pad and crop: small shifts) or center"),
    ("--augment", str, "trivial (TrivialAugment-Wide), randaugment (RandAugment) or none"),
    ("--randaugment-magnitude", int, "RandAugment strength, 0..30 as in the paper and timm's rand-m9"),
    ("--randaugment-ops", positive_int, "RandAugment operations per image (timm's rand-n2)"),
    ("--mixup", float, "mixup alpha (0: off)"), ("--cutmix", float, "cutmix alpha (0: off)"),
    ("--ema", float, "EMA decay of the weights, e.g. 0.999 (0: off)"),
    ("--seed", int, "random seed; the same seed repeats a run exactly on CPU"),
    ("--workers", int, "loader worker processes per training process (default: the cores left after one per "
                       "process, at most 16; 0 builds batches in the training process)"),
    ("--cache", str, "image folders: auto (default; in memory when the decoded set fits 1/4 of the available "
                     "memory), ram or none (read the files at every use)"),
    ("--val-data", str, "val shards, e.g. 'shards/val-{000000..000009}.tar' (default: the val split of --data)"),
    ("--val-fraction", float, "val share when the folder has no train/val split"),
    ("--crop-pct", float, "evaluation: resize the shorter side to img_size / crop_pct, then center-crop (default: "
                          "the --init checkpoint's, else the embedded dataset's, 1.0 for mnist-5k, else 0.875)"),
    ("--interpolation", str, "evaluation: how the shorter side is resized (default: the --init checkpoint's, "
                             "else bicubic)"),
    ("--time-limit", float, "plan the run to this many minutes: the epochs that fit (measured), with the "
                            "schedule ending at --min-lr when the time ends; --epochs, if given, is the most "
                            "(default: no limit)"),
    ("--save-every", int, "also checkpoint every this many steps inside an epoch (0: only at epoch ends)"),
    ("--max-bad-steps", int, "steps with NaN/inf loss or gradients to skip before stopping"),
    ("--drop-path", float, "stochastic depth rate (a model option)"),
    ("--frames", positive_int, "video: frames per clip (default: the model's)"),
    ("--frame-sampling", str, "video: uniform (one frame per segment) or strided"),
    ("--frame-stride", positive_int, "video: frames between samples for --frame-sampling strided"),
    ("--inflate", str, "video --init from an image ViT: how its patch kernel becomes a tubelet kernel"),
]
# Options that take one of a fixed set of values (TrainConfig checks the same sets).
_CHOICES: dict[str, tuple[str, ...]] = {
    "--task": ("image", "video", "segmentation3d"),
    "--precision": ("auto", "bf16", "fp32"),
    "--crop": ("rrc", "shift", "center"),
    "--augment": ("trivial", "randaugment", "none"),
    "--frame-sampling": ("uniform", "strided"),
    "--inflate": ("central_frame", "filter_average"),
    "--cache": ("auto", "ram", "none"),
    "--interpolation": ("bicubic", "bilinear"),
}
_MODEL_OPTIONS = {"drop_path"}


def _field(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _model_args(pairs: list[str]) -> dict:
    from ..errors import VitkitError

    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise VitkitError(f"--model-arg expects KEY=VALUE, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def build_train_config(args: argparse.Namespace):
    """TrainConfig from defaults < the embedded dataset's recipe or the planner's (train/recipe.py) < options
    given on the command line."""
    from ..data.datasets import recipe_for
    from ..train.config import TrainConfig

    data = args.data or "mnist-5k"
    given = _given_options(args)
    values = recipe_for(data)
    if args.init:  # the weights expect their own normalisation and crop, not the recipe's from-scratch ones
        values = {k: v for k, v in values.items() if k not in ("mean", "std", "crop_pct")}
    elif not values and args.task in (None, "image", "video"):
        from ..train.recipe import plan_for_data

        plan = plan_for_data(data, args.task, given, given.get("val_fraction", 0.2), given.get("seed", 0))
        values = {**plan.values, "plan": plan.reasons}
    model_args = {**values.get("model_args", {}), **given.pop("model_args")}
    values.update(given, data=data, model_args=model_args)
    if given.get("time_limit") and args.epochs is None:  # the budget chooses the epochs (train/budget.py)
        from ..train.budget import EPOCH_CAP

        values["epochs"] = EPOCH_CAP
    values.setdefault("out", f"runs/{Path(data).name or 'data'}-{values.get('model', TrainConfig.model)}")
    return TrainConfig(**values)


def _given_options(args: argparse.Namespace) -> dict:
    """The TrainConfig values the command line sets (``model_args`` always present)."""
    given: dict = {"model_args": _model_args(args.model_arg or [])}
    for option, _, _ in _OPTIONS:
        name = _field(option)
        value = getattr(args, name)
        if value is not None:
            (given["model_args"] if name in _MODEL_OPTIONS else given)[name] = value
    if args.no_flip:
        given["flip"] = False
    if args.crop_scale:
        given["crop_scale"] = tuple(args.crop_scale)
    for name in ("mean", "std"):  # None: the --init checkpoint's, else ImageNet's (train/normalisation.py)
        if getattr(args, name) is not None:
            given[name] = tuple(getattr(args, name))
    given.update(compile=args.compile, grad_checkpointing=args.grad_checkpointing, fsdp=args.fsdp)
    return given


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import segmentation3d
    from ..train.loop import Trainer
    from ..train.run_folder import resume_config

    if args.task == "segmentation3d" or segmentation3d.is_segmentation3d_run(args.resume):
        if args.plan_only:
            from ..errors import VitkitError

            raise VitkitError("--plan-only plans image and video runs; segmentation3d has no planner yet")
        return segmentation3d.run_from_args(args)  # point clouds have a runner of their own

    # Both configs are read without loading data: a resumed run keeps its own --grad-checkpointing.
    config = resume_config(args.resume) if args.resume else build_train_config(args)
    tune_heap(args.heap, config.grad_checkpointing)
    if args.plan_only:
        return _print_plan(config, bool(args.resume))
    trainer = Trainer(config, resume=bool(args.resume), overwrite=args.overwrite)
    summary = trainer.fit()
    if summary.get("interrupted"):
        return 130
    if "best_val_accuracy" not in summary:  # ranks other than 0 of a distributed run report nothing
        return 0
    print(f"\nbest model: val accuracy {summary['best_val_accuracy']:.2%} in fp32 (epoch lines: the run's precision); "
          f"{summary['epochs_done']} epochs, {summary['train_minutes']:.1f} min; model in {summary['run']}")
    print("plots: " + ", ".join(summary["plots"]))
    return 0


def _print_plan(config, resume: bool) -> int:
    """``--plan-only``: build the run in a temporary folder, probe this machine, print the plan, train nothing."""
    import tempfile

    from ..errors import VitkitError
    from ..train.loop import Trainer

    if resume:
        raise VitkitError("--plan-only plans a new run; drop --resume (a resumed run keeps its saved plan)")
    with tempfile.TemporaryDirectory(prefix="vitkit-plan-") as folder:
        trainer = Trainer(config.replace(out=folder))
        try:
            print("\n".join(f"recipe: {line}" for line in config.plan))
            print(trainer.plan_text())
        finally:
            trainer.feed.close()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import moving_digits
    from ..data.datasets import EMBEDDED
    from ..errors import VitkitError
    from ..outputs import refuse_existing
    from ..train import report, seg3d_eval, segmentation3d
    from ..train.evaluate import evaluate, evaluate_clips
    from ..train.feed import resolve_workers
    from ..train.stream_tasks import StreamedEvalSet
    from ..train.video_stream_tasks import StreamedVideoEvalSet

    if segmentation3d.is_segmentation3d_run(args.run):  # point clouds: mIoU and coloured PLY predictions
        return seg3d_eval.run_from_args(args)
    tune_heap(args.heap)
    opened = _open_for_inference(args)
    model, prep, class_names, video = opened.model, opened.preprocess, opened.class_names, opened.is_video
    out = Path(args.out or Path(args.run) / "eval")
    refuse_existing([out / "metrics.json", out / "confusion_matrix.png"], overwrite=args.overwrite)
    streamed = args.data not in EMBEDDED and args.data != moving_digits.NAME  # folders, shards: batch by batch
    val = (StreamedVideoEvalSet(args.data, prep, class_names, _views(args.views)) if streamed else
           prep.eval_set(args.data, class_names)) if video else \
        StreamedEvalSet(args.data, prep, args.batch_size) if streamed else EMBEDDED[args.data].load(prep.short_side)[1]
    if val.class_names != class_names:
        raise VitkitError(f"{args.data} has classes {val.class_names} but the model was trained on {class_names}")
    if streamed:
        metrics = val.evaluate(model, resolve_workers(args.workers))
    elif video:
        metrics = evaluate_clips(model, val, views=_views(args.views))
    else:
        metrics = evaluate(model, val, prep, batch_size=args.batch_size)
    if val.skipped:
        print(report.skipped_warning(val.skipped), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report.plot_confusion(out / "confusion_matrix.png", metrics["confusion_matrix"], class_names)
    unit = f"videos ({args.views} views each)" if video else "images"
    print(f"accuracy {metrics['accuracy']:.2%} on {metrics['samples']} {unit}"
          + (f", top-5 {metrics['top5_accuracy']:.2%}" if "top5_accuracy" in metrics else "")
          + (f", {len(val.skipped)} skipped" if val.skipped else ""))
    width = max(len(n) for n in class_names)
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for name, row in metrics["per_class"].items():
        print(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}")
    print(f"metrics and confusion matrix in {out}")
    return 0


def _views(text: str) -> tuple[int, int]:
    """``CLIPSxCROPS`` -> (clips, crops)."""
    from ..errors import VitkitError

    clips, sep, crops = text.lower().partition("x")
    if not (sep and clips.isdigit() and crops.isdigit() and int(clips) > 0 and int(crops) > 0):
        raise VitkitError(f"--views expects CLIPSxCROPS such as 2x3, got {text!r}")
    return int(clips), int(crops)


def _open_for_inference(args: argparse.Namespace):
    """``vitkit.open`` of the command's model on ``--device``, with ``--merge`` and ``--int8`` when asked."""
    from ..inference import open_model

    return open_model(args.run, args.device, int8=args.int8, merge=args.merge)


def cmd_predict(args: argparse.Namespace) -> int:
    """``vitkit predict``: :meth:`vitkit.inference.Classifier.files` with a printer (table, JSON or CSV)."""
    from ..data.decode import is_image_file
    from ..data.video import is_video_file
    from ..errors import VitkitError
    from ..inference import Classifier
    from ..train import report, seg3d_eval, segmentation3d

    if segmentation3d.is_segmentation3d_run(args.run):  # point clouds: coloured PLY predictions
        return seg3d_eval.predict_from_args(args)
    tune_heap(args.heap)
    classifier = Classifier(_open_for_inference(args), top_k=args.top_k, batch_size=64, views=_views(args.views))
    video = classifier.opened.is_video
    wanted = is_video_file if video else is_image_file
    files: list[Path] = []
    for item in map(Path, args.inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and wanted(p))
        elif item.is_file():
            files.append(item)
        else:
            raise VitkitError(f"{item} does not exist")
    if not files:
        raise VitkitError(f"no {'video' if video else 'image'} files in {', '.join(args.inputs)}")
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer is not None:
        writer.writerow(["file", "rank", "class", "probability"])
    rows, skipped, count = [], [], 0
    for paths, probabilities, bad in classifier.files(files, args.workers):
        skipped += bad
        for path, ranked in zip(paths, classifier.rank(probabilities, args.top_k)):
            count += 1
            row = {"file": str(path),
                   "predictions": [{"class": r["label"], "probability": round(r["score"], 6)} for r in ranked]}
            if args.format == "json":
                rows.append(row)  # one small dict per file; JSON is printed as one document at the end
            elif writer is not None:
                for rank, pred in enumerate(row["predictions"], 1):
                    writer.writerow([row["file"], rank, pred["class"], pred["probability"]])
            else:
                best = "  ".join(f"{p['class']} {p['probability']:.1%}" for p in row["predictions"])
                print(f"{row['file']}  {best}", flush=True)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    if skipped:
        print(report.skipped_warning(skipped), file=sys.stderr)
    if not count:  # bad input, not a bug: status 2 like every other input error
        print(f"error: none of the {len(skipped)} input files could be read (each is named above): "
              "fix or replace them", file=sys.stderr)
        return 2
    return 0


def _default_text(option: str) -> str:
    """`` (default: X; mnist-5k: Y)``: the value a run gets when the option is not given, from TrainConfig (or
    the model config for model options) and the embedded default dataset's recipe."""
    import dataclasses

    from ..data.datasets import EMBEDDED
    from ..models.config import ViTConfig
    from ..train.config import TrainConfig

    name = _field(option)
    fields = {f.name: f for f in dataclasses.fields(ViTConfig if name in _MODEL_OPTIONS else TrainConfig)}
    default = fields[name].default if name in fields else None
    if default is None or default is dataclasses.MISSING:
        return ""
    recipe = EMBEDDED["mnist-5k"].recipe
    embedded = f"; {recipe[name]} for the embedded mnist-5k" if name in recipe and recipe[name] != default else ""
    return f" (default: {default}{embedded})"


def register(add) -> None:
    from ..fast.allocator import HEAP_GOALS
    from ..inference.device import DEVICE_HELP

    train = add("train", cmd_train, "train a model on an image or video folder (default: the embedded MNIST-5k digits)",
                ["vitkit train                                  # the embedded MNIST-5k digits, ~97% in minutes",
                 "vitkit train --data pets/ --model vit_s16 --init timm:vit_small_patch16_224 "
                 "--epochs 10 --lr 1e-4 --out runs/pets   # the checkpoint's mean/std",
                 "vitkit train --resume runs/pets               # continue a stopped run",
                 "vitkit train --task video --data moving-digits --out runs/digits",
                 "torchrun --nproc-per-node 4 -m vitkit train --data pets/ --batch-size 256"])
    train.add_argument("--data", default=None,
                       help="PATH/{train,val}/<class>/* or PATH/<class>/*, or mnist-5k (the default); "
                            "with --task video, PATH/{train,val}/<class>/<videos> or moving-digits")
    for option, kind, help_text in _OPTIONS:
        train.add_argument(option, type=kind, default=None, choices=_CHOICES.get(option),
                           help=help_text + ("" if "default:" in help_text else _default_text(option)))
    train.add_argument("--crop-scale", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                       help="area range of random resized crops" + _default_text("--crop-scale"))
    for option, what in (("--mean", "mean"), ("--std", "standard deviation")):
        train.add_argument(option, type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                           help=f"input normalisation: the {what} per channel (default: the --init checkpoint's, "
                                "else the embedded dataset's, 0.5 for mnist-5k, else ImageNet's)")
    train.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. for digits or text)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--grad-checkpointing", action="store_true", help="trade compute for activation memory")
    train.add_argument("--fsdp", action="store_true",
                       help="under torchrun: shard the model (FSDP) instead of replicating it (DDP, the default)")
    train.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                       help="override a model option, e.g. --model-arg depth=6 (repeatable)")
    train.add_argument("--plan-only", action="store_true",
                       help="print the plan (epochs, steps, warmup, expected minutes from a few measured steps, "
                            "precision) and exit without training or writing --out")
    train.add_argument("--resume", metavar="RUN", help="continue a stopped run (all other options come from it)")
    train.add_argument("--overwrite", action="store_true",
                       help="start a new run in a non-empty --out: the files of an earlier run there are removed")
    train.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)

    evaluate = add("eval", cmd_eval, "evaluate a trained run on a labelled image (or video) folder",
                   ["vitkit eval runs/pets --data pets/val",
                    "vitkit eval runs/pets --data pets/val --int8 --out runs/pets/eval-int8"])
    evaluate.add_argument("run", help="run folder (or any vitkit model folder)")
    evaluate.add_argument("--data", required=True, help="PATH/<class>/* or a dataset root with val/")
    evaluate.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    evaluate.add_argument("--out", default=None,
                          help="folder for metrics.json and confusion_matrix.png (default: RUN/eval)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace metrics.json and the plot if they exist")
    evaluate.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    evaluate.add_argument("--merge", type=int, default=0, metavar="R",
                          help="token merging: merge R token pairs per block (faster, approximate; see docs/speed.md)")
    evaluate.add_argument("--views", default="2x3", metavar="CLIPSxCROPS",
                          help="video models: views per video, averaged")
    evaluate.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.add_argument("--workers", type=int, default=None,
                          help="image decoding worker processes (default: the cores less one, at most 16)")

    predict = add("predict", cmd_predict, "classify image or video files (or segment 3-D scans) with a trained run",
                  ["vitkit predict runs/pets cat.jpg dog.png",
                   "vitkit predict runs/pets photos/ --top-k 3 --format csv > predictions.csv"])
    predict.add_argument("run", help="run folder (or any vitkit model folder)")
    predict.add_argument("inputs", nargs="+", help="image or video files or folders (segmentation3d: scans)")
    predict.add_argument("--top-k", type=positive_int, default=1, help="classes to show per input")
    predict.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    predict.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    predict.add_argument("--merge", type=int, default=0, metavar="R",
                         help="token merging: merge R token pairs per block (faster, approximate; see docs/speed.md)")
    predict.add_argument("--views", default="2x3", metavar="CLIPSxCROPS", help="video: views per video, averaged")
    predict.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)
    predict.add_argument("--device", default="auto", help=DEVICE_HELP)
    predict.add_argument("--workers", type=int, default=None,
                         help="image decoding worker processes (default: the cores less one, at most 16)")
