"""Benchmark results as files: ``results.json`` (everything), ``results.md`` (tables) and ``results.png``
(throughput of every candidate relative to the best peer, one cluster of bars per model and mode)."""

from __future__ import annotations

import json
from pathlib import Path

from ..store import atomic_write, atomic_write_json


def write_all(results: dict, folder: str | Path) -> list[Path]:
    """Write JSON, Markdown and PNG into ``folder``; returns the paths written."""
    folder = Path(folder)
    atomic_write_json(folder / "results.json", results)
    atomic_write(folder / "results.md", markdown(results).encode())
    paths = [folder / "results.json", folder / "results.md"]
    if chart(results, folder / "results.png"):
        paths.append(folder / "results.png")
    return paths


def markdown(results: dict) -> str:
    """The summary table (one line per target), the full table, and peak memory."""
    meta = results.get("meta", {})
    lines = [f"# vitkit benchmark ({meta.get('date', '')})", "", _meta_line(meta), ""]
    comparisons = [(g, c) for g in results["groups"] for c in g["comparisons"]]
    if comparisons:
        lines += ["| model | mode | vitkit path | vitkit /s | best peer | peer /s | ratio | target | pass |",
                  "|---|---|---|---:|---|---:|---:|---:|---|"]
        for group, comp in comparisons:
            mine = _find(group, comp["name"])
            peer = _find(group, comp["best_peer"]) if comp["best_peer"] else None
            lines.append(f"| {group['model']} | {group['mode']} | {comp['name']} | {_rate(mine)} | "
                         f"{comp['best_peer'] or '-'} | {_rate(peer)} | {_num(comp['ratio'], 2)}x | "
                         f"{comp['target']:.2f}x | {'PASS' if comp['pass'] else 'FAIL'} |")
        lines.append("")
    lines += ["Every candidate (median [min-max] items/s over the rounds; MFU against the matmul peak of the "
              "same run):", "", "| model | mode | batch | candidate | median /s | min-max | MFU | peak GFLOP/s |",
              "|---|---|---:|---|---:|---|---:|---:|"]
    for group in results["groups"]:
        peak = group["peak"]["median"]
        for row in group["results"]:
            spread = "-" if row["median"] is None else f"{row['min']:.3g}-{row['max']:.3g}"
            note = f" ({row['error']})" if row.get("error") else ""
            lines.append(f"| {group['model']} | {group['mode']} | {group['batch']} | {row['name']}{note} | "
                         f"{_rate(row)} | {spread} | {_num(row.get('mfu'), 2)} | {_num(peak and peak / 1e9, 0)} |")
    if results.get("memory"):
        lines += ["", "Peak training memory (fp32, one fresh process per candidate; CPU: peak RSS minus RSS before "
                  "building the model):", "", "| model | batch | candidate | peak MiB | vs best peer |",
                  "|---|---:|---|---:|---:|"]
        for row in results["memory"]:
            lines.append(f"| {row['model']} | {row['batch']} | {row['name']} | {_num(row['peak_mib'], 0)} | "
                         f"{_num(row.get('vs_best_peer'), 2)} |")
        lines += ["", *_checkpointing_lines(results["memory"])]
    return "\n".join(lines) + "\n"


def _checkpointing_lines(rows: list[dict]) -> list[str]:
    """One line per model: how much activation checkpointing cuts vitkit's peak training memory."""
    peaks = {(r["model"], r["name"]): r["peak_mib"] for r in rows}
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        plain, checkpointed = peaks.get((model, "vitkit")), peaks.get((model, "vitkit+ckpt"))
        if plain and checkpointed:
            lines.append(f"- {model}: activation checkpointing cuts vitkit's peak by {1 - checkpointed / plain:.0%} "
                         f"({plain:.0f} -> {checkpointed:.0f} MiB)")
    return lines


def chart(results: dict, path: Path) -> bool:
    """A bar chart of throughput relative to the best peer; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = [g for g in results["groups"] if g["comparisons"]]
    if not groups:
        return False
    names = sorted({r["name"] for g in groups for r in g["results"]})
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(groups)), 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        heights = [_relative(g, name) for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], heights, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(groups))])
    ax.set_xticklabels([f"{g['model']}\n{g['mode']}" for g in groups], fontsize=8)
    ax.set_ylabel("throughput / best peer (median)")
    ax.set_title(f"vitkit vs peers, {results.get('meta', {}).get('device', '')}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _relative(group: dict, name: str) -> float:
    row = _find(group, name)
    best = _find(group, group["comparisons"][0]["best_peer"]) if group["comparisons"][0]["best_peer"] else None
    if not row or not best or not row["median"] or not best["median"]:
        return 0.0
    return row["median"] / best["median"]


def _find(group: dict, name: str | None) -> dict | None:
    return next((r for r in group["results"] if r["name"] == name), None)


def _rate(row: dict | None) -> str:
    return "-" if row is None or row["median"] is None else f"{row['median']:.3g}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _meta_line(meta: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in meta.items() if k != "date" and not isinstance(v, (dict, list)))


def load(path: str | Path) -> dict:
    """Read a ``results.json``."""
    return json.loads(Path(path).read_text())
