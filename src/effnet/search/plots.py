"""Figures: every search candidate's accuracy (the chosen one marked), and accuracy vs multiply-adds per method.

With several training seeds the points are means and the error bars one sample standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from effnet._util.fileio import atomic_write  # noqa: E402

if TYPE_CHECKING:
    from effnet.search.grid_search import SearchRow
    from effnet.search.study import StudyRow

METHOD_STYLE = {
    "width": ("tab:blue", "s"),
    "depth": ("tab:orange", "^"),
    "resolution": ("tab:green", "D"),
    "compound": ("tab:red", "o"),
}


def plot_search(rows: Sequence[SearchRow], base: SearchRow | None, path: str | Path, *, title: str = "") -> Path:
    """Bars of validation accuracy per candidate, best first; the chosen one in red, the base as a line."""
    path = Path(path)
    ok = [row for row in rows if row.status == "ok" and row.val_acc is not None]
    accuracy = {row.trial_id: 100 * (row.val_acc or 0.0) for row in ok}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(ok) + 1.5), 3.4), dpi=100)
    labels = [f"{r.alpha:g}/{r.beta:g}/{r.gamma:g}" for r in ok]
    colors = ["tab:red" if index == 0 else "tab:gray" for index in range(len(ok))]
    errors = [100 * (r.val_acc_sd or 0.0) for r in ok]
    ax.bar(
        range(len(ok)),
        [accuracy[r.trial_id] for r in ok],
        color=colors,
        yerr=errors if any(errors) else None,
        capsize=2,
        error_kw={"linewidth": 0.8},
    )
    for index, row in enumerate(ok):
        top = accuracy[row.trial_id] + 100 * (row.val_acc_sd or 0.0)
        ax.text(index, top, f"{row.macs_ratio:.1f}x", ha="center", va="bottom", fontsize=6)
    if base is not None and base.val_acc is not None:
        ax.axhline(
            100 * base.val_acc,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"base (phi=0): {100 * base.val_acc:.1f}%",
        )
        ax.legend(loc="lower left", fontsize=7)
    ax.set_xticks(range(len(ok)), labels, rotation=70, fontsize=7)
    ax.set_xlabel("alpha / beta / gamma (red: chosen; label above bar: measured multiply-adds vs base)", fontsize=7)
    ax.set_ylabel("val top-1 (%)")
    if ok:
        low = min([*accuracy.values()] + ([100 * base.val_acc] if base and base.val_acc is not None else []))
        high = max(accuracy[r.trial_id] + 100 * (r.val_acc_sd or 0.0) for r in ok)
        ax.set_ylim(max(0.0, low - 10), min(100.0, high + 6))
    ax.set_title(title or "compound scaling search", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))  # a kill mid-write leaves the old plot
    plt.close(fig)
    return path


def plot_study(rows: Sequence[StudyRow], path: str | Path, *, title: str = "") -> Path:
    """Accuracy vs multiply-adds, one line per scaling method, all starting from the base (paper Fig. 8)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=100)

    def points_of(method: str) -> list[tuple[int, float, float]]:
        return sorted(
            (r.macs, r.val_acc, r.val_acc_sd or 0.0) for r in rows if r.method == method and r.val_acc is not None
        )

    for method, (color, marker) in METHOD_STYLE.items():
        points = points_of(method)
        if not points:
            continue
        points = points_of("base") + points
        errors = [100 * sd for _, _, sd in points]
        ax.errorbar(
            [m / 1e6 for m, _, _ in points],
            [100 * a for _, a, _ in points],
            yerr=errors if any(errors) else None,
            color=color,
            marker=marker,
            label=method,
            capsize=3,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("multiply-adds (M, log scale)")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "scaling study", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))  # a kill mid-write leaves the old plot
    plt.close(fig)
    return path
