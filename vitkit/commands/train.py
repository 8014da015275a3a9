"""``vitkit train``, ``vitkit eval`` and ``vitkit predict``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .args import positive_int

# CLI option -> TrainConfig field; every option defaults to None so that "not given" is visible and an
# embedded dataset's recipe (or the config defaults) fills the rest.
_OPTIONS: list[tuple[str, type, str]] = [
    ("--task", str, "image (default), video (folders of video files, a ViViT model) or segmentation3d (indoor "
                    "scans: indoor-rooms, S3DIS or ScanNet folders, a Swin3D model)"),
    ("--model", str, "model name (see `vitkit models`)"),
    ("--init", str, "start from pretrained weights: a run folder, a file, timm:NAME or hf:ORG/NAME"),
    ("--out", str, "run folder to create (default runs/<data>-<model>)"),
    ("--epochs", positive_int, "training epochs"),
    ("--batch-size", positive_int, "images per optimiser step"),
    ("--accum-steps", positive_int, "split each batch into this many micro-batches (gradient accumulation)"),
    ("--lr", float, "peak learning rate"),
    ("--min-lr", float, "final learning rate of the cosine schedule"),
    ("--weight-decay", float, "AdamW weight decay (not applied to norms, biases, pos-embed, [CLS])"),
    ("--warmup-epochs", float, "linear warmup length"),
    ("--clip-grad", float, "gradient-norm clipping (0: off)"),
    ("--label-smoothing", float, "label smoothing"),
    ("--precision", str, "auto (bf16 where it is measured faster than fp32 on this machine), bf16 (autocast) or fp32"),
    ("--img-size", positive_int, "training resolution (default: the model's)"),
    ("--crop", str, "rrc (random resized crop), shift or center"),
    ("--augment", str, "trivial (TrivialAugment), randaugment or none"),
    ("--mixup", float, "mixup alpha (0: off)"),
    ("--cutmix", float, "cutmix alpha (0: off)"),
    ("--ema", float, "EMA decay of the weights, e.g. 0.999 (0: off)"),
    ("--seed", int, "random seed; the same seed repeats a run exactly on CPU"),
    ("--workers", int, "loader worker processes per training process (default: the cores left after one per "
                       "process, at most 16; 0 builds batches in the training process)"),
    ("--cache", str, "image folders: auto (default; in memory when the decoded set fits 1/4 of the available "
                     "memory), ram or none (read the files at every use)"),
    ("--val-data", str, "val shards, e.g. 'shards/val-{000000..000009}.tar' (default: the val split of --data)"),
    ("--val-fraction", float, "val share when the folder has no train/val split"),
    ("--time-limit", float, "stop after this many minutes of training"),
    ("--save-every", int, "also checkpoint every this many steps inside an epoch (0: only at epoch ends)"),
    ("--max-bad-steps", int, "steps with NaN/inf loss or gradients to skip before stopping (default 10)"),
    ("--drop-path", float, "stochastic depth rate (a model option)"),
    ("--frames", positive_int, "video: frames per clip (default: the model's)"),
    ("--frame-sampling", str, "video: uniform (one frame per segment) or strided"),
    ("--frame-stride", positive_int, "video: frames between samples for --frame-sampling strided"),
    ("--inflate", str, "video --init from an image ViT: central_frame (default) or filter_average"),
]
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
    """TrainConfig from defaults < the embedded dataset's recipe < options given on the command line."""
    from ..data import moving_digits
    from ..data.datasets import EMBEDDED
    from ..train.config import TrainConfig

    data = args.data or "mnist-5k"
    recipes = {**{name: d.recipe for name, d in EMBEDDED.items()}, moving_digits.NAME: moving_digits.RECIPE}
    values: dict = dict(recipes.get(data, {}))
    values["data"] = data
    model_args = _model_args(args.model_arg or [])
    for option, _, _ in _OPTIONS:
        name = _field(option)
        given = getattr(args, name)
        if given is None:
            continue
        if name in _MODEL_OPTIONS:
            model_args[name] = given
        else:
            values[name] = given
    if args.no_flip:
        values["flip"] = False
    if args.crop_scale:
        values["crop_scale"] = tuple(args.crop_scale)
    values["compile"] = args.compile
    values["grad_checkpointing"] = args.grad_checkpointing
    values["fsdp"] = args.fsdp
    values["model_args"] = model_args
    values.setdefault("out", f"runs/{Path(data).name or 'data'}-{values.get('model', TrainConfig.model)}")
    return TrainConfig(**values)


def _tune_heap(goal: str, grad_checkpointing: bool = False) -> None:
    """Apply ``--heap`` (process-wide): called first, before any data or model is allocated."""
    from ..fast.allocator import resolve_heap, tune_allocator

    done = tune_allocator(resolve_heap(goal, grad_checkpointing))
    if "refused" in done:
        print(f"warning: heap {done}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import segmentation3d
    from ..train.loop import Trainer, resume_config

    if args.task == "segmentation3d" or segmentation3d.is_segmentation3d_run(args.resume):
        return segmentation3d.run_from_args(args)  # point clouds have a runner of their own

    # Both configs are read without loading data: a resumed run keeps its own --grad-checkpointing.
    config = resume_config(args.resume) if args.resume else build_train_config(args)
    _tune_heap(args.heap, config.grad_checkpointing)
    trainer = Trainer(config, resume=bool(args.resume))
    summary = trainer.fit()
    if summary.get("interrupted"):
        return 130
    if "best_val_accuracy" not in summary:  # ranks other than 0 of a distributed run report nothing
        return 0
    print(f"\nbest val accuracy {summary['best_val_accuracy']:.2%} after {summary['epochs_done']} epochs "
          f"({summary['train_minutes']:.1f} min); model in {summary['run']}")
    print("plots: " + ", ".join(summary["plots"]))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..errors import VitkitError
    from ..train import report
    from ..train.evaluate import evaluate

    from ..train.evaluate import evaluate_clips
    from ..train.tasks import VideoPreprocess

    from ..data.datasets import EMBEDDED
    from ..train.feed import resolve_workers
    from ..train.stream_tasks import StreamedEvalSet

    _tune_heap(args.heap)
    model, prep, class_names = _load_for_inference(args)
    video = isinstance(prep, VideoPreprocess)
    streamed = not video and args.data not in EMBEDDED  # image folders and shards: one batch at a time
    val = prep.eval_set(args.data) if video else StreamedEvalSet(args.data, prep, args.batch_size) if streamed \
        else _eval_set(args.data, prep.short_side)
    if val.class_names != class_names:
        raise VitkitError(f"{args.data} has classes {val.class_names} but the model was trained on {class_names}")
    if video:
        metrics = evaluate_clips(model, val, views=_views(args.views))
    elif streamed:
        metrics = val.evaluate(model, resolve_workers(args.workers))
    else:
        metrics = evaluate(model, val, prep, batch_size=args.batch_size)
    if val.skipped:
        print(report.skipped_warning(val.skipped), file=sys.stderr)
    out = Path(args.out or Path(args.run) / "eval")
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


def _eval_set(data: str, short_side: int):
    """The test split of an embedded set (folders and shards are streamed: ``StreamedEvalSet``)."""
    from ..data.datasets import EMBEDDED

    return EMBEDDED[data].load(short_side)[1]


def _load_for_inference(args: argparse.Namespace):
    """The run's model, with token merging (``--merge``) and int8 quantisation (``--int8``) when asked."""
    from ..train.loop import load_run

    model, prep, class_names = load_run(args.run)
    if args.merge:
        from ..fast.merge import use_token_merging

        use_token_merging(model, args.merge)
    if args.int8:
        from ..fast import quantize_int8

        model = quantize_int8(model)
    return model, prep, class_names


def cmd_predict(args: argparse.Namespace) -> int:
    from ..data.decode import is_image_file
    from ..data.video import is_video_file
    from ..errors import VitkitError
    from ..train import report
    from ..train.evaluate import predict_clip_logits, top_k
    from ..train.tasks import VideoPreprocess

    _tune_heap(args.heap)
    model, prep, class_names = _load_for_inference(args)
    video = isinstance(prep, VideoPreprocess)
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
    if video:
        data = prep.files(files, class_names)
        batches = iter([(data.paths, predict_clip_logits(model, data, views=_views(args.views), desc=None),
                         data.skipped)])
    else:  # one batch of images at a time, decoded in worker processes, printed as it is ready
        from ..train.feed import resolve_workers
        from ..train.stream_tasks import predict_files

        batches = predict_files(model, files, prep, resolve_workers(args.workers))
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer is not None:
        writer.writerow(["file", "rank", "class", "probability"])
    rows, skipped, count = [], [], 0
    for paths, logits, bad in batches:
        skipped += bad
        for path, preds in zip(paths, top_k(logits, class_names, args.top_k)):
            count += 1
            row = {"file": str(path), "predictions": [{"class": c, "probability": round(p, 6)} for c, p in preds]}
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
    return 0 if count else 1


def register(add) -> None:
    from ..fast.allocator import HEAP_GOALS

    heap_help = ("glibc heap: speed keeps freed tensors for reuse, memory returns them at once, system leaves "
                 "glibc's defaults; auto = memory with --grad-checkpointing, else speed (see docs/speed.md)")
    train = add("train", cmd_train, "train a model on an image or video folder (default: the embedded MNIST-5k digits)")
    train.add_argument("--data", default=None,
                       help="PATH/{train,val}/<class>/* or PATH/<class>/*, or mnist-5k (the default); "
                            "with --task video, PATH/{train,val}/<class>/<videos> or moving-digits")
    for option, kind, help_text in _OPTIONS:
        train.add_argument(option, type=kind, default=None, help=help_text)
    train.add_argument("--crop-scale", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                       help="area range of random resized crops")
    train.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. for digits or text)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--grad-checkpointing", action="store_true", help="trade compute for activation memory")
    train.add_argument("--fsdp", action="store_true",
                       help="under torchrun: shard the model (FSDP) instead of replicating it (DDP, the default)")
    train.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                       help="override a model option, e.g. --model-arg depth=6 (repeatable)")
    train.add_argument("--resume", metavar="RUN", help="continue a stopped run (all other options come from it)")
    train.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)

    evaluate = add("eval", cmd_eval, "evaluate a trained run on a labelled image (or video) folder")
    evaluate.add_argument("run", help="run folder (or any vitkit model folder)")
    evaluate.add_argument("--data", required=True, help="PATH/<class>/* or a dataset root with val/")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--out", default=None, help="where to write metrics.json and the confusion matrix")
    evaluate.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    evaluate.add_argument("--merge", type=int, default=0, metavar="R",
                          help="token merging: merge R token pairs per block (faster, approximate; see docs/speed.md)")
    evaluate.add_argument("--views", default="2x3", help="video models: CLIPSxCROPS views per video, averaged")
    evaluate.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)
    evaluate.add_argument("--workers", type=int, default=None,
                          help="image decoding worker processes (default: the cores less one, at most 16)")

    predict = add("predict", cmd_predict, "classify image (or video) files or folders with a trained run")
    predict.add_argument("run", help="run folder (or any vitkit model folder)")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    predict.add_argument("--top-k", type=positive_int, default=1)
    predict.add_argument("--format", choices=["table", "json", "csv"], default="table")
    predict.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    predict.add_argument("--merge", type=int, default=0, metavar="R",
                         help="token merging: merge R token pairs per block (faster, approximate; see docs/speed.md)")
    predict.add_argument("--views", default="2x3", help="video models: CLIPSxCROPS views per video, averaged")
    predict.add_argument("--heap", choices=HEAP_GOALS, default="auto", help=heap_help)
    predict.add_argument("--workers", type=int, default=None,
                         help="image decoding worker processes (default: the cores less one, at most 16)")
