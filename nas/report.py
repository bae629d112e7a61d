"""The run report: what to deploy where, Pareto plots per device, training curves, search progress, latency check."""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas import report_figures as figures
from nas.search_files import HISTORY, PARETO
from search_spaces.errors import UserInputError

LATENCY_SOURCES = {"measured": "measured (per-layer ONNX Runtime table of this CPU)",
                   "roofline": "estimated (roofline model from the device's specs)",
                   "predictor": "predicted (calibrated predictor)"}
GENERATOR = "hwnas nas report"


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
    code: list[str] = field(default_factory=list)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_subnets(run_dir: Path) -> list[dict]:
    """Every exported subnet's arch.json merged with its metrics.json, sorted by id."""
    subnets = []
    for arch_file in sorted((run_dir / "subnets").glob("*/arch.json")):
        info = json.loads(arch_file.read_text())
        info["metrics"] = _json(arch_file.parent / "metrics.json")
        info["id"] = arch_file.parent.name
        subnets.append(info)
    return subnets


def search_dirs(run_dir: Path) -> list[Path]:
    """Directories under `search/` holding a history.csv, one per target."""
    return sorted(p.parent for p in (run_dir / "search").rglob(HISTORY))


def latency_source(run_dir: Path, device: str) -> str:
    """Whether a device's latencies in this run are measured, estimated or predicted (from its table's metadata;
    a device without a table in luts/ was priced by a calibrated predictor)."""
    table = run_dir / "luts" / f"{device}.json"
    if not table.is_file():
        return LATENCY_SOURCES["predictor"]
    method = json.loads(table.read_text()).get("metadata", {}).get("method", "")
    return LATENCY_SOURCES.get(method, method or "unknown")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _budget_label(budget: float, relative: dict[float, float]) -> str:
    fraction = relative.get(budget)
    return f"{budget:g} ms" + ("" if fraction is None else f" ({fraction:.0%} of range)")


def _budget_met(device: str, budget: float, predicted: float | None, metrics: dict) -> str:
    if device == "host-cpu" and "host_cpu_latency_ms_measured" in metrics:
        measured = metrics["host_cpu_latency_ms_measured"]
        low = metrics.get("host_cpu_latency_spread_ms", [measured])[0]
        if measured <= budget:
            return f"yes: measured {measured:.3g} ms"
        return (f"within noise: measured {measured:.3g} ms, p10 {low:.3g} ms" if low <= budget
                else f"no: measured {measured:.3g} ms")
    if predicted is None:
        return "not known"
    return f"yes (estimate {predicted:.3g} ms)" if predicted <= budget else f"no (estimate {predicted:.3g} ms)"


def deploy_section(run_dir: Path, subnets: list[dict], relative: dict[str, dict[float, float]],
                   sizes: dict, sources: dict[str, str]) -> Section:
    """Per device and budget: the subnet to deploy, its file, how to feed it, its accuracy and latency."""
    section = Section("What to deploy where")
    header = ["device", "budget", "subnet", "file", "test accuracy", "val. accuracy (search)",
              "device latency", "latency source", "host-cpu measured", "budget met"]
    rows = []
    for s in subnets:
        metrics = s["metrics"]
        for choice in s.get("chosen_for", []):
            device, budget = choice.get("device", ""), float(choice.get("budget_ms", np.nan))
            predicted = choice.get("predicted", {})
            test = metrics.get("test_accuracy")
            host = metrics.get("host_cpu_latency_ms_measured")
            rows.append((device, budget, [
                device, _budget_label(budget, relative.get(device, {})), s["id"],
                f"subnets/{s['id']}/model.onnx",
                "-" if test is None else f"{_percent(test)} of {metrics.get('num_test', '?')} images",
                "-" if "accuracy" not in predicted else f"{_percent(predicted['accuracy'])} of "
                                                         f"{sizes.get('val', '?')} images",
                "-" if "latency_ms" not in predicted else f"{predicted['latency_ms']:.3g} ms",
                sources[device].split(" (")[0],
                "-" if host is None else f"{host:.3g} ms",
                _budget_met(device, budget, predicted.get("latency_ms"), metrics)]))
    rows.sort(key=lambda r: (r[0], r[1]))
    section.tables.append(("Chosen subnets, one per device and budget", header, [r for _, _, r in rows]))
    first = subnets[0]
    shape = first.get("input_shape", ["H", "W", "C"])
    classes = first.get("class_names")
    section.notes.append(
        f"Each file takes raw images exactly as the data loader yields them: float32, NHWC, shape (N, "
        f"{', '.join(map(str, shape))}), values in [0, 1]; normalisation is inside the model. Its output "
        "`logits` has one column per class" + (f" ({', '.join(classes)})." if classes else "."))
    section.notes.append(
        "Test accuracy is measured by running model.onnx with ONNX Runtime on the raw test split; validation "
        "accuracy is the supernet's (inherited weights, BN recalibrated) that the search ranked by. Device latency "
        "is the search's model of that device; host-cpu measured is model.onnx timed on this machine (median of "
        "50 runs, batch 1).")
    section.code.append(
        "import numpy as np, onnxruntime as ort\n"
        f"session = ort.InferenceSession(\"{run_dir}/subnets/{first['id']}/model.onnx\")\n"
        f"images = np.random.rand(4, {', '.join(map(str, shape))}).astype(np.float32)  # your images, in [0, 1]\n"
        "logits = session.run(None, {\"images\": images})[0]\n"
        "print(logits.argmax(axis=1))\n"
        f"# or, in Python with JAX: nas.load_subnet(\"{run_dir}/subnets/{first['id']}\")(images)")
    return section


def _relative_budgets(run_dir: Path) -> dict[str, dict[float, float]]:
    out = {}
    for device, entry in _json(run_dir / "budgets.json").items():
        out[device] = dict(zip(entry.get("relative_ms", []), entry.get("relative", [])))
    return out


def _front_table(rows: list[dict], pareto_file: Path) -> tuple[str, list[str], list[list[str]]] | None:
    front = read_csv(pareto_file) if pareto_file.is_file() else []
    if not front:
        return None
    columns = [c for c in front[0] if c not in ("arch", "hash", "index", "generation")]
    table = [[_fmt(float(r[c])) if r[c] not in ("", None) else "" for c in columns] + [r["arch"]] for r in front]
    return (f"Pareto front ({len(front)} of {len(rows)} evaluated)", columns + ["architecture"], table)


def build_sections(run_dir: Path) -> list[Section]:
    images = run_dir / "report"
    subnets = load_subnets(run_dir)
    stages = _json(run_dir / "stages.json")
    sizes = stages.get("data", {}).get("sizes", {})
    relative = _relative_budgets(run_dir)
    by_device: dict[str, list[tuple[Path, dict]]] = {}
    for directory in search_dirs(run_dir):
        meta = _json(directory / "target.json")
        meta.setdefault("target", str(directory.relative_to(run_dir / "search")))
        by_device.setdefault(meta.get("device") or meta["target"], []).append((directory, meta))
    devices = set(by_device) | {c.get("device", "") for s in subnets for c in s.get("chosen_for", [])}
    sources = {d: latency_source(run_dir, d) if (run_dir / "luts").is_dir() else "from the evaluator"
               for d in devices}
    sections = [deploy_section(run_dir, subnets, relative, sizes, sources)] \
        if any(s.get("chosen_for") for s in subnets) else []
    curves = {}
    for device, searches in by_device.items():
        rows, seen, budgets = [], set(), []
        for directory, meta in searches:
            for row in read_csv(directory / HISTORY):
                if row["arch"] not in seen:
                    seen.add(row["arch"])
                    rows.append(row)
            budgets += [float(b) for b in meta.get("budgets_ms", [])]
        budgets = sorted(set(budgets))
        names = {meta["target"] for _, meta in searches}
        chosen = [{"latency_ms": c["predicted"]["latency_ms"], "accuracy": c["predicted"]["accuracy"],
                   "label": s["id"][:6]} for s in subnets for c in s.get("chosen_for", [])
                  if c.get("target") in names and {"latency_ms", "accuracy"} <= set(c.get("predicted", {}))]
        slug = device.replace("/", "_").replace("@", "_")
        source = sources[device]
        labels = [(b, _budget_label(b, relative.get(device, {}))) for b in budgets]
        section = Section(f"Device {device}")
        caption = (f"{len(rows)} distinct subnets evaluated" +
                   (f" on {sizes['val']} validation images" if "val" in sizes else "") +
                   f"; latency {source}" + ("; dashed lines: budgets" if budgets else "") +
                   ("; stars: exported subnets (labels: subnet id)" if chosen else ""))
        if {"accuracy", "latency_ms"} <= set(rows[0] if rows else {}):
            section.figures.append(Figure("Accuracy vs latency", figures.pareto_figure(
                rows, f"{device}: accuracy vs latency", labels, chosen, images / f"pareto_{slug}.png"), caption))
            curves[device] = {meta["target"]: figures.hypervolume_curve(read_csv(directory / HISTORY))
                              for directory, meta in searches}
        if not chosen:
            for directory, meta in searches:
                table = _front_table(rows, directory / PARETO)
                if table is not None:
                    section.tables.append(table)
        sections.append(section)
    if curves:
        overview = Section("Search progress")
        overview.figures.append(Figure("Hypervolume vs evaluations", figures.progress_figure(
            curves, images / "progress.png"), "hypervolume of each search's front after each evaluation; one "
            "panel per device, one line per budget"))
        sections.append(overview)
    metrics_file = run_dir / "metrics.csv"
    if metrics_file.exists():
        training = Section("Supernet training")
        training.figures.append(Figure("Training curves", figures.training_figure(
            read_csv(metrics_file), images / "training.png"),
            "loss of every step; validation accuracy of the largest and smallest subnets (BN recalibrated)"
            + (f" on {sizes['val']} images" if "val" in sizes else "")))
        sections.append(training)
    pairs = [(m["host_cpu_latency_ms_predicted"], m["host_cpu_latency_ms_measured"],
              *m.get("host_cpu_latency_spread_ms", [m["host_cpu_latency_ms_measured"]] * 2))
             for m in (s["metrics"] for s in subnets)
             if {"host_cpu_latency_ms_predicted", "host_cpu_latency_ms_measured"} <= set(m)]
    if pairs:
        latency = Section("Host-CPU latency: predicted vs measured")
        latency.figures.append(Figure("Predicted vs measured", figures.latency_check_figure(
            pairs, images / "host_cpu_latency.png"), "each exported model.onnx timed with ONNX Runtime on this "
            "machine (median, p10-p90 of 50 runs) against the latency the search predicted"))
        sections.append(latency)
    return sections


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='generator' content='{GENERATOR}'>"
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:.6em;font-size:12px;overflow-x:auto}"
             "figcaption{font-size:13px;color:#444}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for figure in section.figures:
            data = base64.b64encode(figure.png.read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(figure.caption or figure.title)}</figcaption></figure>")
        for caption, header, rows in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3><table><tr>"
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        for note in section.notes:
            parts.append(f"<p>{html.escape(note)}</p>")
        for code in section.code:
            parts.append(f"<pre><code>{html.escape(code)}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[Section], run_dir: Path) -> str:
    lines = [f"<!-- {GENERATOR} -->", f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for figure in section.figures:
            lines += [f"![{figure.title}]({figure.png.relative_to(run_dir)})", "", figure.caption, ""]
        for caption, header, rows in section.tables:
            lines += [f"### {caption}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            lines.append("")
        lines += [n + "\n" for n in section.notes]
        lines += ["```python\n" + code + "\n```\n" for code in section.code]
    return "\n".join(lines)


def _made_by_report(path: Path) -> bool:
    with path.open("rb") as f:
        return GENERATOR.encode() in f.read(4096)


def _refuse_foreign_files(run_dir: Path) -> None:
    """`nas report` replaces only what an earlier `nas report` wrote: report.html and report.md carrying its
    generator mark, and report/ beside such a report.html."""
    ours = [run_dir / "report.html", run_dir / "report.md"]
    for path in ours:
        if path.exists() and not (path.is_file() and _made_by_report(path)):
            raise UserInputError(f"{path} exists and was not written by `nas report`; hwnas never overwrites files "
                                 "it did not make: move it away or report another directory")
    figures = run_dir / "report"
    if figures.exists() and not ours[0].is_file():
        raise UserInputError(f"{figures} exists beside no report.html of `nas report`; hwnas never overwrites files "
                             "it did not make: move it away or report another directory")


def write_report(run_dir: str | Path) -> Path:
    """Writes `report.html` (self-contained), `report.md` and the PNGs under `report/`; returns the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"run directory {str(run_dir)!r} does not exist")
    _refuse_foreign_files(run_dir)
    sections = build_sections(run_dir)
    if not sections:
        raise UserInputError(f"run directory {str(run_dir)!r} has nothing to report yet: no search/*/history.csv, "
                             "metrics.csv or subnets/")
    title = f"hwnas report: {run_dir.name}"
    (run_dir / "report.md").write_text(render_markdown(title, sections, run_dir))
    out = run_dir / "report.html"
    out.write_text(render_html(title, sections))
    return out
