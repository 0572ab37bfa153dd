"""Training curves (loss and AP per epoch) as a PNG, for people who would rather look than read a log."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: Path, title: str = "", loss_name: str = "") -> Path:
    """Loss (log scale, left) and AP (right) against the epoch; returns the written path."""
    epochs = [h["epoch"] for h in history]
    fig, loss_axis = plt.subplots(figsize=(6, 3.6), dpi=120)
    loss_axis.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel(f"train loss ({loss_name})" if loss_name else "train loss", color="tab:blue")
    ap_axis = loss_axis.twinx()
    ap_axis.plot(epochs, [h["ap"] or 0.0 for h in history], "s-", color="tab:red", label="val AP")
    ap_axis.set_ylabel("val AP (COCOeval)", color="tab:red")
    ap_axis.set_ylim(0, 1)
    if title:
        loss_axis.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_supernet_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """A supernet training: its sandwich loss (log scale, left) and the inherited AP of each tracked genome (the
    largest, the smallest, the space's presets: the `ap.<name>` keys) against the epoch; returns the written path."""
    epochs = [h["epoch"] for h in history]
    names = [key.removeprefix("ap.") for key in history[-1] if key.startswith("ap.")]
    fig, (loss_axis, ap_axis) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    loss_axis.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="sandwich")
    loss_axis.plot(epochs, [h["loss_largest"] for h in history], "s--", color="tab:gray", label="largest")
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("train loss")
    loss_axis.legend(fontsize=7)
    for name in names:
        ap_axis.plot(epochs, [h.get(f"ap.{name}") or 0.0 for h in history], "o-", label=name, markersize=3)
    ap_axis.set_xlabel("epoch")
    ap_axis.set_ylabel("inherited val AP (COCOeval)")
    ap_axis.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
