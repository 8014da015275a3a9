"""``vitkit explain``: what the model looked at, as PNG overlays on the input image (for a video model: an
animated GIF of the clip and a "frame x time" PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..outputs import refuse_existing

MAX_COLUMNS = 7  # 12 heads + the input make two rows


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain, figure_size, load_crop, save_figure, to_input
    from ..inference import open_model
    from ..train.segmentation3d import is_segmentation3d_run

    if is_segmentation3d_run(args.source):  # a 3-D scan: one point's window attention
        return _explain_scan(args)
    opened = open_model(args.source, args.device)
    model, config = opened.model, opened.model.config
    if opened.is_video:  # a video model (ViViT)
        return _explain_video(args, opened)
    prep = opened.preprocess
    crop = load_crop(args.image, prep)
    images = to_input(crop, prep).to(opened.device)
    target = _class_index(args.target, _named_classes(opened)) if args.target is not None else None
    result = _on_cpu(explain(model, images, args.method, layer=args.layer, head=args.head, target=target))
    if getattr(config, "attention_axis", "tokens") == "batch":
        print("note: this model attends across the batch, so within one image no patch reaches the classifier "
              "token: its maps are flat (see docs/explain.md)", file=sys.stderr)
    panels, captions = _panels(crop, result)
    columns = min(len(panels), MAX_COLUMNS)
    out = Path(args.out)
    path = out / f"{Path(args.image).stem}.{_suffix(args, config)}.png"
    refuse_existing([path], overwrite=args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    title = _title(result, _named_classes(opened), args.method)
    save_figure(path, panels, captions, title, columns=columns)
    width, height = figure_size(panels[0].shape[:2], len(panels), columns)
    print(f"{path} ({width}x{height}): {title}")
    return 0


def _explain_video(args: argparse.Namespace, opened: Any) -> int:
    """The central clip of the video file, as ``vitkit eval`` cuts it: a GIF frame by frame, and the timeline."""
    from ..errors import VitkitError
    from ..explain import clip_figures, explain, figure_size, load_clip, save_gif, save_timeline, timeline_size
    from ..explain.overlay import enlarge

    model = opened.model
    if model.config.in_channels != 3:
        raise VitkitError(f"explain reads RGB video, but this model takes {model.config.in_channels} channels")
    frames, clips = load_clip(args.image, opened.preprocess)
    target = _class_index(args.target, _named_classes(opened)) if args.target is not None else None
    result = _on_cpu(explain(model, clips.to(opened.device), args.method, layer=args.layer, head=args.head,
                             target=target))
    heat = result.heat[0].numpy()
    title = _title(result, _named_classes(opened), args.method)
    out = Path(args.out)
    stem = f"{Path(args.image).stem}.{_suffix(args, model.config)}"
    refuse_existing([out / f"{stem}.gif", out / f"{stem}.timeline.png"], overwrite=args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    columns = min(len(heat), MAX_COLUMNS)
    titles = [f"{title} - frame {i + 1}/{len(frames)}" for i in range(len(frames))]
    gif = save_gif(out / f"{stem}.gif", clip_figures(frames, heat, result.captions, titles, columns))
    width, height = figure_size(enlarge(frames[0]).shape[:2], len(heat), columns)
    print(f"{gif} ({width}x{height}, {len(frames)} frames): {title}")
    timeline = save_timeline(out / f"{stem}.timeline.png", frames, heat, result.captions, title)
    width, height = timeline_size(heat.shape[1], len(heat))
    print(f"{timeline} ({width}x{height}): {title}")
    return 0


def _named_classes(opened: Any) -> list[str]:
    """The class names the source itself gives (titles say ``class 3`` for a class without a name)."""
    return list(opened.meta.get("class_names") or [])


def _on_cpu(result: Any) -> Any:
    """An ``Explanation`` with its tensors on the CPU (to draw)."""
    import dataclasses

    import torch

    moved = {f.name: getattr(result, f.name).detach().cpu() for f in dataclasses.fields(result)
             if isinstance(getattr(result, f.name), torch.Tensor)}
    return dataclasses.replace(result, **moved)


def _panels(crop, result) -> tuple[list, list[str]]:
    """The input crop, then one overlay per map; a map with no contrast is captioned as flat."""
    from ..explain.overlay import enlarge, is_flat, overlay

    crop = enlarge(crop)
    heats = [heat.numpy() for heat in result.heat[0]]
    captions = [caption + (" (flat)" if is_flat(heat) else "") for caption, heat in zip(result.captions, heats)]
    return [crop] + [overlay(crop, heat) for heat in heats], ["input"] + captions


def _class_index(target: str, class_names: list[str] | None) -> int:
    """``--target`` as a class index: a class name from the model's config.json, or a number."""
    from ..errors import VitkitError

    if class_names and target in class_names:
        return class_names.index(target)
    if target.isdigit():
        return int(target)
    shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    known = f"one of {shown} or " if class_names else ""
    raise VitkitError(f"--target {target!r} is not a class of this model; use {known}a class index")


def _title(result, class_names: list[str], method: str) -> str:
    """``rollout: predicted dog (p = 0.93)``, plus the explained class when it is not the predicted one."""
    if result.probabilities.numel() == 0:
        return f"{method}: the model has no classification head"
    names = class_names
    name = lambda index: names[index] if index < len(names) else f"class {index}"  # noqa: E731
    predicted = int(result.probabilities[0].argmax())
    title = f"{method}: predicted {name(predicted)} (p = {result.probabilities[0, predicted]:.1%})"
    explained = int(result.target[0])
    if method == "grad-rollout" and explained != predicted:
        title += f", explaining {name(explained)} (p = {result.probabilities[0, explained]:.1%})"
    return title


def _suffix(args: argparse.Namespace, config: Any) -> str:
    """The file-name part that says what was drawn: ``rollout``, ``attention-layer11``, ``attention-layer11-head3``."""
    if args.method != "attention":
        return args.method
    head = "" if args.head is None else f"-head{args.head % config.heads}"
    return f"attention-layer{args.layer % config.depth}{head}"


def _explain_scan(args: argparse.Namespace) -> int:
    """The window attention of ``--point`` in block ``--layer`` of a Swin3D run's first stage, from three views."""
    from ..explain.points import render, window_attention
    from ..store import load_model
    from ..train.seg3d_eval import scan_for_prediction

    model, meta = load_model(args.source)
    scan = scan_for_prediction(Path(args.image))
    point = args.point if args.point is not None else int(((scan.xyz - scan.xyz.mean(0)) ** 2).sum(1).argmin())
    found = window_attention(model, scan, float(meta["voxel_size"]), point, args.layer, args.head)
    classes = meta["class_names"]
    heads = "mean over heads" if args.head is None else f"head {args.head}"
    title = (f"point {point} ({classes[found.predicted]}): block {found.block} of stage 1, {heads}, "
             f"{found.window_voxels} voxels in its window")
    path = Path(args.out) / f"{Path(args.image).stem}.point{point}.block{found.block}.png"
    refuse_existing([path], overwrite=args.overwrite)
    render(path, scan, found, title)
    print(f"{path}: {title}")
    return 0


def register(add) -> None:
    from ..inference.device import DEVICE_HELP

    explain = add("explain", cmd_explain,
                  "draw what a model looks at on an image or video: per-head attention, attention rollout, "
                  "grad-rollout",
                  ["vitkit explain runs/pets cat.jpg",
                   "vitkit explain runs/pets cat.jpg --method attention --layer 11 --head 3",
                   "vitkit explain runs/pets cat.jpg --method grad-rollout --target dog",
                   "vitkit explain runs/digits clip.mp4 --out explain/clips",
                   "vitkit explain runs/rooms scan.ply --point 1234"])
    explain.add_argument("source", metavar="RUN_OR_SOURCE",
                         help="a vitkit model folder (from `vitkit train`), a timm / Hugging Face / torchvision / JAX "
                              "checkpoint that `vitkit.load` reads, or a model name (random weights)")
    explain.add_argument("image", metavar="IMAGE_OR_VIDEO",
                         help="an image file (.jpg, .png, ...); for a video model, a video file (.mp4, .avi, ...)")
    explain.add_argument("--method", choices=["attention", "rollout", "grad-rollout"], default="rollout",
                         help="attention: one layer, a panel per head; rollout: all layers (Abnar & Zuidema "
                              "2020); grad-rollout: class-specific (Chefer et al. 2021). Default rollout")
    explain.add_argument("--layer", type=int, default=-1, help="layer for --method attention (default -1, the last); "
                         "a 3-D scan: block of the first stage")
    explain.add_argument("--point", type=int, default=None,
                         help="a 3-D scan: the point whose window attention is drawn (default: nearest the centre)")
    explain.add_argument("--head", type=int, default=None, help="one head for --method attention (default: all)")
    explain.add_argument("--target", default=None, metavar="CLASS",
                         help="class to explain with grad-rollout, by name or index (default: the predicted one)")
    explain.add_argument("--out", default="explain", metavar="DIR",
                         help="folder for the PNGs and GIFs (default ./explain)")
    explain.add_argument("--overwrite", action="store_true", help="replace figures of the same name in --out")
    explain.add_argument("--device", default="auto", help=DEVICE_HELP)
