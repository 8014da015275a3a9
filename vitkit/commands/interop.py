"""``vitkit convert`` and ``vitkit export``: other libraries' checkpoints in and out, deployment formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import positive_int

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


def cmd_convert(args: argparse.Namespace) -> int:
    from ..interop.load import load
    from ..interop.save import reference_kwargs, save_as
    from ..outputs import refuse_non_empty

    refuse_non_empty(args.out, overwrite=args.overwrite, flag="output")
    model = load(args.source, num_classes=args.num_classes, image_size=args.image_size, **_architecture(args))
    class_names = model.config.extra.get("source", {}).get("class_names")
    written = save_as(model, args.to, args.out, class_names=class_names, preprocess=_preprocess(args, model))
    c = model.config
    video = hasattr(c, "num_frames")
    patch = f"tubelet {'x'.join(map(str, c.tubelet_size))}" if video else f"patch {'x'.join(map(str, c.patch_size))}"
    clip = f"{c.num_frames}x" if video else ""
    print(f"wrote {written} ({args.to}): {c.kind} dim {c.dim}, depth {c.depth}, heads {c.heads}, {patch}, "
          f"{'clip' if video else 'image'} {clip}{'x'.join(map(str, c.image_size))}, {c.num_classes} classes")
    kwargs = reference_kwargs(args.to, c)
    if kwargs:
        from ..interop.timm_eva import timm_class

        cls = timm_class(c) if args.to == "timm" else "VisionTransformer"
        print(f"build the {args.to} model with {cls}(**{kwargs})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..inference import open_model
    from ..interop.export import check_batches, export_onnx, export_pt2
    from ..outputs import refuse_existing

    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / f"model{FORMATS[args.format]}"
    refuse_existing([out], overwrite=args.overwrite)
    model = open_model(args.run, "cpu").model
    if args.format == "onnx":
        diff = export_onnx(model, out, dynamic_batch=args.dynamic_batch, opset=args.opset)
    else:
        diff = export_pt2(model, out, dynamic_batch=args.dynamic_batch)
    batches = check_batches(args.dynamic_batch)
    on = f"batch sizes {', '.join(map(str, batches))}" if len(batches) > 1 else f"batch size {batches[0]}"
    print(f"wrote {out}; max abs diff vs PyTorch {diff:.2e} on {on}")
    return 0


def _preprocess(args: argparse.Namespace, model) -> dict | None:
    """For ``--to vitkit`` and ``--to hf``: the source's preprocessing (mean, std, crop; see
    interop/normalisation.py) as a vitkit folder records it, so eval, predict, ``vitkit train --init`` and a
    transformers pipeline use it. None for other targets, video models, and a ``--to vitkit`` source recording
    none; ``--to hf`` then writes what ``vitkit.open`` uses for such a source, and says so."""
    from ..interop.normalisation import checkpoint_normalisation

    height, width = model.config.image_size
    if args.to not in ("vitkit", "hf") or hasattr(model.config, "num_frames") or height != width:
        return None  # video: its clip sampling too; non-square: vitkit's eval center-crops squares
    found = checkpoint_normalisation(args.source)
    if found is not None:
        return found.preprocess(height)
    if args.to == "vitkit":
        return None
    from ..inference.open import default_preprocess

    prep = default_preprocess(model.config, {}).to_dict()
    print(f"{args.source} records no preprocessing: preprocessor_config.json gets vitkit's defaults for it "
          f"(shorter side {prep['short_side']}, center crop {height}, mean=std=0.5, the original ViT weights')")
    return prep


def _architecture(args: argparse.Namespace) -> dict:
    return {"heads": args.heads} if args.heads else {}


def _image_size(text: str) -> int | tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an image size like 384 or 384x512, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected an image size like 384 or 384x512, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def register(add) -> None:
    from ..interop.save import TARGETS

    convert = add("convert", cmd_convert,
                  "convert a checkpoint (vitkit folder, timm/HF/torchvision/JAX file, timm:NAME, hf:ORG/NAME)",
                  ["vitkit convert timm:vit_small_patch16_224 --to vitkit models/vit_s16",
                   "vitkit convert runs/pets --to hf exported/pets-hf",
                   "vitkit convert ViT-B_16.npz --to vitkit models/vit_b16_384 --image-size 384"])
    convert.add_argument("source", help="a model folder, a .safetensors/.pth/.bin/.npz file, timm:NAME or hf:ORG/NAME")
    convert.add_argument("--to", choices=TARGETS, required=True, help="the format to write")
    convert.add_argument("out", help="output folder (vitkit, hf) or file (timm, torchvision: .safetensors or .pth); "
                                     "it must not exist yet (or be an empty folder)")
    convert.add_argument("--overwrite", action="store_true", help="write over an existing output file or folder")
    convert.add_argument("--image-size", type=_image_size, default=None, metavar="SIZE",
                         help="resample the position embedding for this image size, e.g. 384")
    convert.add_argument("--num-classes", type=int, default=None, metavar="N",
                         help="replace the head with a new N-class one (0: no head)")
    convert.add_argument("--heads", type=positive_int, default=None, metavar="N",
                         help="attention heads, when the weights are not a standard ViT size (default: inferred)")

    export = add("export", cmd_export, "export a model to ONNX or torch.export (.pt2), verified against PyTorch",
                 ["vitkit export runs/pets --format onnx --dynamic-batch",
                  "vitkit export runs/pets --format pt2 --out deploy/pets.pt2"])
    export.add_argument("run", help="a model folder or any checkpoint `vitkit convert` reads")
    export.add_argument("--format", choices=list(FORMATS), required=True, help="onnx (checked with onnxruntime) or "
                        "pt2 (a torch.export program)")
    export.add_argument("--dynamic-batch", action="store_true", help="any batch size (verified at batch 1 and 7)")
    export.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: the exporter's)")
    export.add_argument("--out", default=None, help="output file (default: RUN/model.onnx or RUN/model.pt2)")
    export.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
