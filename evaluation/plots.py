"""PNG figures for eval reports: pitch contours, spectrograms, metric bars (matplotlib, Agg backend).

Figures are small (about 700 x 300 px) so a handful can be committed with the docs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Write a PNG with a 128-colour palette: a fraction of the size of full colour, same look."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(path, optimize=True)
    return Path(path)


def _cents_axis(f0: np.ndarray) -> np.ndarray:
    """Hz -> MIDI note numbers, unvoiced frames as NaN (gaps in the line)."""
    f0 = np.asarray(f0, float)
    out = np.full(len(f0), np.nan)
    v = f0 > 0
    out[v] = 69 + 12 * np.log2(f0[v] / 440.0)
    return out


def pitch_contours(path: str | Path, frame_rate: float, source: np.ndarray, expected: np.ndarray,
                   outputs: dict[str, np.ndarray], title: str = "") -> Path:
    """Source f0, expected f0 (source x key shift) and each system's output f0, as MIDI note numbers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.75, 3.5), dpi=DPI)
    t = lambda x: np.arange(len(x)) / frame_rate  # noqa: E731
    ax.plot(t(source), _cents_axis(source), color="0.6", lw=1.0, label="source")
    ax.plot(t(expected), _cents_axis(expected), color="k", lw=2.0, alpha=0.5, label="expected (source x key)")
    for name, f0 in outputs.items():
        ax.plot(t(f0), _cents_axis(f0), lw=1.0, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch (MIDI note)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def spectrograms(path: str | Path, sr: int, signals: dict[str, np.ndarray], title: str = "",
                 fmax: float = 8000.0) -> Path:
    """Log-mel spectrograms of a few signals (source, outputs, ground truth), stacked, one colour scale."""
    import librosa

    plt = _plt()
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(8.75, 1.4 * n + 0.4), dpi=DPI, sharex=True, squeeze=False)
    mels = {k: librosa.power_to_db(librosa.feature.melspectrogram(y=np.asarray(v, np.float32), sr=sr, n_fft=1024,
                                                                   hop_length=256, n_mels=80, fmax=fmax), ref=1.0)
            for k, v in signals.items()}
    top = max(float(m.max()) for m in mels.values())
    for ax, (name, m) in zip(axes[:, 0], mels.items()):
        ax.imshow(m, origin="lower", aspect="auto", vmin=top - 80, vmax=top, cmap="magma",
                  extent=(0, m.shape[1] * 256 / sr, 0, 80))
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(path: str | Path, summary: list[dict], metrics: list[str], title: str = "") -> Path:
    """One small bar chart per metric, one bar per system (missing values are left out)."""
    plt = _plt()
    metrics = [m for m in metrics if any(r.get(m) is not None and np.isfinite(r.get(m, np.nan)) for r in summary)]
    if not metrics:
        raise ValueError("metric_bars: no metric has a value")
    cols = min(4, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.3 * rows + 0.5), dpi=DPI, squeeze=False)
    systems = [r["system"] for r in summary]
    colours = plt.get_cmap("tab10")(np.arange(len(systems)) % 10)
    for ax, m in zip(axes.flat, metrics):
        vals = [r.get(m) for r in summary]
        ok = [i for i, v in enumerate(vals) if v is not None and np.isfinite(v)]
        ax.bar([i for i in ok], [vals[i] for i in ok], color=[colours[i] for i in ok])
        ax.set_title(m, fontsize=8)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(len(systems))]
    fig.legend(handles, systems, loc="lower center", ncol=min(3, len(systems)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(systems) - 1) // 3), 1, 1))
    return _save(fig, path)
