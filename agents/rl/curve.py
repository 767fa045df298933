"""The learning curve of a training run: success rate against environment steps.

``plot_curve(steps, series, path)`` draws with matplotlib when it is installed (the
``[metrics]`` extra), else with PIL (always installed), so every run gets its PNG.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
"""Line colours, one per series in order."""


def plot_curve(
    steps: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    path: str | Path,
    ylabel: str = "success rate",
) -> str:
    """Write a line plot of each series (values in [0, 1]) against ``steps`` to ``path``.

    Missing values (None, NaN) are skipped. Returns a description of what was written.
    """
    out = Path(path)
    if any(len(values) != len(steps) for values in series.values()):
        raise ValueError(
            f"every series needs one value per step ({len(steps)}), got "
            f"{ {name: len(v) for name, v in series.items()} }"
        )
    if importlib.util.find_spec("matplotlib") is None:
        _pil_curve(steps, series, out, ylabel)
        return f"{out} (matplotlib not installed: drawn with PIL)"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120, layout="tight")
    try:
        for (name, values), colour in zip(series.items(), COLOURS):
            ax.plot(steps, [math.nan if v is None else v for v in values], marker="o", ms=3,
                    label=name, color=colour)
        ax.set(xlabel="environment steps", ylabel=ylabel, ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return str(out)


def _pil_curve(
    steps: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    path: Path,
    ylabel: str,
    size: tuple[int, int] = (560, 340),
) -> None:
    """Draw the same plot with PIL: a box, y ticks at 0, 0.5, 1, one polyline per series."""
    width, height = size
    left, right, top, bottom = 56, 150, 16, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    span_x = max(max(steps, default=1) - min(steps, default=0), 1)
    x0 = min(steps, default=0)

    def to_xy(step: float, value: float) -> tuple[float, float]:
        x = left + (step - x0) / span_x * (width - left - right)
        return x, height - bottom - value * (height - top - bottom)

    for tick in (0.0, 0.5, 1.0):
        _, y = to_xy(x0, tick)
        draw.text((8, y - 6), f"{tick:.1f}", fill="black")
    draw.text((left, height - bottom + 6), f"{x0}", fill="black")
    draw.text((width - right - 60, height - bottom + 6), f"{x0 + span_x} steps", fill="black")
    draw.text((8, height - 16), ylabel, fill="black")
    for index, ((name, values), colour) in enumerate(zip(series.items(), COLOURS)):
        points = [to_xy(s, float(v)) for s, v in zip(steps, values)
                  if v is not None and math.isfinite(float(v))]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((width - right + 8, top + 16 * index), name, fill=colour)
    image.save(path)
