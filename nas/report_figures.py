"""The report's plots: accuracy vs latency per device, search progress, training curves, latency check."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nas.pareto import hypervolume, pareto_mask  # noqa: E402

BUDGET_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def numeric_column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows], dtype=float)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _limits(values: np.ndarray, margin: float = 0.06) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    span = high - low if high > low else max(abs(high), 1e-3) * 0.1
    return low - margin * span, high + margin * span


def pareto_figure(rows: list[dict], title: str, budgets: list[tuple[float, str]], chosen: list[dict],
                  path: Path) -> Path:
    """Accuracy vs latency of every subnet evaluated for one device, its front, the budgets as lines and the
    exported subnets as stars labelled with their ids; axes fitted to the points and budgets."""
    acc, lat = numeric_column(rows, "accuracy"), numeric_column(rows, "latency_ms")
    ok = np.isfinite(acc) & np.isfinite(lat)
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    ax.scatter(lat[ok], acc[ok], s=16, alpha=0.55, color="tab:blue", label=f"evaluated ({int(ok.sum())})")
    if ok.any():
        front = pareto_mask(np.stack([lat[ok], -acc[ok]], axis=1))
        order = np.argsort(lat[ok][front])
        ax.step(lat[ok][front][order], acc[ok][front][order], where="post", color="black", lw=1.2,
                label="Pareto front")
    for (budget, label), color in zip(budgets, BUDGET_COLORS * 4):
        ax.axvline(budget, color=color, ls="--", lw=1.1, label=f"budget {label}")
    if chosen:
        ax.scatter([c["latency_ms"] for c in chosen], [c["accuracy"] for c in chosen], marker="*", s=220,
                   color="tab:orange", edgecolor="black", zorder=5, label="exported subnets")
        for c in chosen:
            ax.annotate(c["label"], (c["latency_ms"], c["accuracy"]), textcoords="offset points", xytext=(6, -12),
                        fontsize=8)
    xs = np.concatenate([lat[ok], [b for b, _ in budgets]])
    if xs.size:
        ax.set_xlim(*_limits(xs))
    if ok.any():
        ax.set_ylim(*_limits(acc[ok], 0.1))
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    return save(fig, path)


def hypervolume_curve(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Hypervolume of the (latency, accuracy) front after each evaluation, reference at the worst values seen."""
    acc, lat = numeric_column(rows, "accuracy"), numeric_column(rows, "latency_ms")
    ok = np.isfinite(acc) & np.isfinite(lat)
    points = np.stack([lat[ok], -acc[ok]], axis=1)
    if len(points) == 0:
        return np.zeros(0), np.zeros(0)
    ref = points.max(axis=0) + 1e-9
    steps = np.unique(np.linspace(1, len(points), min(len(points), 60)).astype(int))
    return steps, np.array([hypervolume(points[:k], ref) for k in steps])


def progress_figure(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path) -> Path:
    """One panel per device (hypervolumes of different devices are on different scales), a line per budget."""
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves) + 0.6, 3.4), squeeze=False)
    for ax, (device, by_target) in zip(axes[0], curves.items()):
        for target, (steps, hv) in by_target.items():
            ax.plot(steps, hv, marker=".", label=target)
        ax.set_title(device, fontsize=10)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("hypervolume (latency x accuracy)")
    fig.tight_layout()
    return save(fig, path)


def training_figure(rows: list[dict], path: Path) -> Path:
    """Training loss per step (and its running mean) with phase boundaries; validation accuracy of the largest and
    smallest subnets on a second axis."""
    steps, loss = numeric_column(rows, "step"), numeric_column(rows, "loss")
    has_loss = np.isfinite(loss)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    ax.plot(steps[has_loss], loss[has_loss], lw=0.6, alpha=0.4, color="tab:blue", label="loss per step")
    window = max(1, int(has_loss.sum()) // 40)
    if has_loss.sum() > window:
        smooth = np.convolve(loss[has_loss], np.ones(window) / window, mode="valid")
        ax.plot(steps[has_loss][window - 1:], smooth, lw=1.6, color="tab:blue", label=f"mean of {window} steps")
    phases = [r.get("phase", "") for r in rows]
    for i in range(1, len(rows)):
        if phases[i] != phases[i - 1] and has_loss[i]:
            ax.axvline(steps[i], color="grey", ls=":", lw=1)
            ax.text(steps[i], ax.get_ylim()[1], f" {phases[i]}", fontsize=7, va="top", color="grey")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    evals = {k: numeric_column(rows, k) for k in ("val_acc_largest", "val_acc_smallest")}
    if any(np.isfinite(v).any() for v in evals.values()):
        twin = ax.twinx()
        for (key, values), color in zip(evals.items(), ("tab:green", "tab:orange")):
            ok = np.isfinite(values)
            twin.plot(steps[ok], values[ok], marker="o", color=color, label=key.replace("val_acc_", "val. acc. "))
        twin.set_ylabel("validation accuracy")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=8, frameon=False)
    ax.set_title("supernet training", fontsize=10)
    return save(fig, path)


def latency_check_figure(pairs: list[tuple[float, float, float, float]], path: Path) -> Path:
    """Predicted vs measured host-CPU latency of the exported subnets, measured as median with its p10-p90."""
    predicted, measured, low, high = np.array(pairs).T
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.errorbar(predicted, measured, yerr=[measured - low, high - measured], fmt="o", color="tab:green",
                label="exported subnets (p10-p90)")
    bounds = _limits(np.concatenate([predicted, low, high]), 0.1)
    ax.plot(bounds, bounds, color="grey", ls=":", label="y = x")
    ax.set_xlim(*bounds)
    ax.set_ylim(*bounds)
    ax.set_xlabel("predicted host-cpu latency (ms)")
    ax.set_ylabel("measured host-cpu latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
