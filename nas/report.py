"""The run report: Pareto plots per target, chosen-subnet tables, training curves, search progress, latency checks."""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nas.pareto import hypervolume, pareto_mask  # noqa: E402
from search_spaces.errors import UserInputError  # noqa: E402


@dataclass
class Figure:
    title: str
    png: Path
    caption: str = ""


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def numeric_column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows], dtype=float)


def load_subnets(run_dir: Path) -> list[dict]:
    """Every exported subnet's arch.json merged with its metrics.json, sorted by id."""
    subnets = []
    for arch_file in sorted((run_dir / "subnets").glob("*/arch.json")):
        info = json.loads(arch_file.read_text())
        metrics_file = arch_file.parent / "metrics.json"
        if metrics_file.exists():
            info["metrics"] = json.loads(metrics_file.read_text())
        info["id"] = arch_file.parent.name
        subnets.append(info)
    return subnets


def search_dirs(run_dir: Path) -> list[Path]:
    """Directories under `search/` holding a history.csv, one per target."""
    return sorted(p.parent for p in (run_dir / "search").rglob("history.csv"))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_figure(rows: list[dict], target: str, budgets: list[float], chosen: list[dict], path: Path) -> Path:
    """Accuracy vs latency of every evaluated subnet (energy as colour), the front, budgets and chosen subnets."""
    acc, lat = numeric_column(rows, "accuracy"), numeric_column(rows, "latency_ms")
    energy = numeric_column(rows, "energy_mj") if rows and "energy_mj" in rows[0] else None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ok = ~(np.isnan(acc) | np.isnan(lat))
    if energy is not None and np.isfinite(energy[ok]).any():
        points = ax.scatter(lat[ok], acc[ok], c=energy[ok], cmap="viridis", s=14, alpha=0.8)
        fig.colorbar(points, ax=ax, label="energy (mJ)")
    else:
        ax.scatter(lat[ok], acc[ok], s=14, alpha=0.7, color="tab:blue", label="evaluated")
    if ok.any():
        front = pareto_mask(np.stack([lat[ok], -acc[ok]], axis=1))
        order = np.argsort(lat[ok][front])
        ax.step(lat[ok][front][order], acc[ok][front][order], where="post", color="black", lw=1.2,
                label="Pareto front")
    for i, budget in enumerate(budgets):
        ax.axvline(budget, color="tab:red", ls="--", lw=1, label="latency budget" if i == 0 else None)
    if chosen:
        ax.scatter([c["latency_ms"] for c in chosen], [c["accuracy"] for c in chosen], marker="*", s=180,
                   color="tab:orange", edgecolor="black", zorder=5, label="chosen subnets")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{target}: accuracy vs latency")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def hypervolume_curve(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Hypervolume of the front after each evaluation, reference at the worst accuracy and latency seen."""
    acc, lat = numeric_column(rows, "accuracy"), numeric_column(rows, "latency_ms")
    ok = ~(np.isnan(acc) | np.isnan(lat))
    points = np.stack([lat[ok], -acc[ok]], axis=1)
    if len(points) == 0:
        return np.zeros(0), np.zeros(0)
    ref = points.max(axis=0) + 1e-9
    steps = np.unique(np.linspace(1, len(points), min(len(points), 60)).astype(int))
    return steps, np.array([hypervolume(points[:k], ref) for k in steps])


def progress_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for target, (steps, hv) in curves.items():
        ax.plot(steps, hv, marker=".", label=target)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (latency, accuracy)")
    ax.set_title("search progress")
    ax.legend(fontsize=8)
    return _save(fig, path)


def training_figure(rows: list[dict], path: Path) -> Path:
    steps, loss = numeric_column(rows, "step"), numeric_column(rows, "loss")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    phases = [r.get("phase", "") for r in rows]
    for phase in dict.fromkeys(phases):
        idx = [i for i, p in enumerate(phases) if p == phase]
        ax.plot(steps[idx], loss[idx], lw=1, label=phase or "loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("supernet training")
    ax.legend(fontsize=8)
    return _save(fig, path)


def latency_check_figure(subnets: list[dict], path: Path) -> Path | None:
    pairs = [(s["metrics"]["host_cpu_latency_ms_predicted"], s["metrics"]["host_cpu_latency_ms_measured"])
             for s in subnets if "host_cpu_latency_ms_measured" in s.get("metrics", {})]
    if not pairs:
        return None
    predicted, measured = np.array(pairs).T
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.scatter(predicted, measured, color="tab:green")
    top = max(predicted.max(), measured.max()) * 1.1
    ax.plot([0, top], [0, top], color="grey", ls=":", label="y = x")
    ax.set_xlabel("predicted host-cpu latency (ms)")
    ax.set_ylabel("measured host-cpu latency (ms)")
    ax.set_title("host-cpu: predicted vs measured")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_sections(run_dir: Path) -> list[Section]:
    images = run_dir / "report"
    subnets = load_subnets(run_dir)
    sections, curves = [], {}
    for directory in search_dirs(run_dir):
        target = str(directory.relative_to(run_dir / "search"))
        rows = read_csv(directory / "history.csv")
        meta_file = directory / "target.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        name = meta.get("target", target)
        chosen = [{**s, **c} for s in subnets for c in s.get("chosen_for", [s]) if c.get("target") == name]
        budgets = [float(b) for b in meta.get("budgets_ms", [])]
        slug = target.replace("/", "_").replace("@", "_")
        section = Section(f"Target {meta.get('target', target)}")
        section.figures.append(Figure("Pareto front", pareto_figure(
            rows, meta.get("target", target), budgets,
            [{"latency_ms": s["predicted"]["latency_ms"], "accuracy": s["predicted"]["accuracy"]} for s in chosen
             if {"latency_ms", "accuracy"} <= set(s.get("predicted", {}))], images / f"pareto_{slug}.png"),
            f"{len(rows)} evaluated subnets; dashed lines: budgets; stars: exported subnets"))
        if chosen:
            header = ["subnet", "budget (ms)", "val accuracy", "latency (ms)", "energy (mJ)", "test accuracy",
                      "host-cpu measured (ms)", "ONNX max diff", "arch"]
            table = [[s["id"], _fmt(s.get("budget_ms", "")), _fmt(s["predicted"].get("accuracy", "")),
                      _fmt(s["predicted"].get("latency_ms", "")), _fmt(s["predicted"].get("energy_mj", "")),
                      _fmt(s.get("metrics", {}).get("test_accuracy", "")),
                      _fmt(s.get("metrics", {}).get("host_cpu_latency_ms_measured", "")),
                      _fmt(s.get("metrics", {}).get("onnx_max_abs_diff", "")), s["arch"]] for s in chosen]
            section.tables.append(("Chosen subnets", header, table))
        curves[meta.get("target", target)] = hypervolume_curve(rows)
        sections.append(section)
    if curves:
        overview = Section("Search progress")
        overview.figures.append(Figure("Hypervolume vs evaluations", progress_figure(curves, images / "progress.png")))
        sections.append(overview)
    metrics_file = run_dir / "metrics.csv"
    if metrics_file.exists():
        training = Section("Supernet training")
        training.figures.append(Figure("Training loss", training_figure(read_csv(metrics_file),
                                                                        images / "training.png")))
        sections.append(training)
    check = latency_check_figure(subnets, images / "host_cpu_latency.png")
    if check is not None:
        latency = Section("Host-CPU latency: predicted vs measured")
        latency.figures.append(Figure("Predicted vs measured", check, "each exported subnet timed with ONNX Runtime"))
        sections.append(latency)
    return sections


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}code{font-size:12px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for note in section.notes:
            parts.append(f"<p>{html.escape(note)}</p>")
        for figure in section.figures:
            data = base64.b64encode(figure.png.read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(figure.caption or figure.title)}</figcaption></figure>")
        for caption, header, rows in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3><table><tr>"
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td><code>{html.escape(c)}</code></td>" for c in row) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[Section], run_dir: Path) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""] + [n + "\n" for n in section.notes]
        for figure in section.figures:
            lines += [f"![{figure.title}]({figure.png.relative_to(run_dir)})", ""]
        for caption, header, rows in section.tables:
            lines += [f"### {caption}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            lines += ["| " + " | ".join(f"`{c}`" if i == len(row) - 1 else c for i, c in enumerate(row)) + " |"
                      for row in rows]
            lines.append("")
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """Writes `report.html` (self-contained), `report.md` and the PNGs under `report/`; returns the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"run directory {str(run_dir)!r} does not exist")
    sections = build_sections(run_dir)
    if not sections:
        raise UserInputError(f"run directory {str(run_dir)!r} has nothing to report yet: no search/*/history.csv, "
                             "metrics.csv or subnets/")
    title = f"hwnas report: {run_dir.name}"
    (run_dir / "report.md").write_text(render_markdown(title, sections, run_dir))
    out = run_dir / "report.html"
    out.write_text(render_html(title, sections))
    return out
