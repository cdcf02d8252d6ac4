"""Rendering a `rim benchmark` report: markdown, CSV, strict JSON and convergence plots.

The report itself (a dict) is built by `benchmark.make_report` from the protocol runs; this
module only writes it out, in every form: `results.md` (and BENCHMARKS.md through
`scripts/make_benchmarks_md.py`), `results.csv`, `results.json` and the PSNR-by-step plots. It
depends on nothing else in the package but `io.write_bytes`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_bytes


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def headline(benchmarks: dict[str, dict[str, dict]]) -> str:
    """One line of a model's recorded figures (`rim models`), settings that share a name grouped:
    "bsd68 sigma 15,25,50: 30.44/28.24/25.55 dB; projections gaussian 1/2,1/4: 29.24/27.71 dB"."""
    parts = []
    for key, settings in benchmarks.items():
        groups: list[tuple[str, list[str], list[str]]] = []  # (name, values, PSNRs), in recorded order
        for setting, figures in settings.items():
            name, value = _split_setting(setting)
            if not groups or groups[-1][0] != name:
                groups.append((name, [], []))
            groups[-1][1].append(value)
            groups[-1][2].append(f"{figures['psnr']:.2f}")
        parts.append(f"{key} " + ", ".join(f"{name + ' ' if name else ''}{(',' if name else '/').join(values)}: "
                                             f"{'/'.join(psnrs)}" for name, values, psnrs in groups) + " dB")
    return "; ".join(parts)


def _split_setting(setting: str) -> tuple[str, str]:
    """'sigma=25' -> ('sigma', '25'); 'gaussian 1/2' -> ('gaussian', '1/2'); 'x2' -> ('', 'x2')."""
    for sep in ("=", " "):
        if sep in setting:
            name, value = setting.rsplit(sep, 1)
            return name, value
    return "", setting


def _method_name(row: dict) -> str:
    if row["kind"] == "rim":
        return f"RIM {row['method']} (T={row['steps']})"
    return {"noisy": "noisy input", "blurred": "blurred input", "pinv": "pseudo-inverse"}.get(row["method"], row["method"])


def summary_table(run: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one run's summary (shared by markdown and the terminal table)."""
    cs = "patches" in run
    if cs:
        header = ["method", "PSNR (dB)", "± std", "s/patch"]
        rows = [[_method_name(r), _fmt(r["psnr"]), _fmt(r["psnr_std"]),
                 _fmt(r["seconds"], 5) + (f" ({r['timed_steps']} steps)" if r.get("timed_steps") else "")]
                for r in run["summary"]]
    else:
        header = ["method", "PSNR (dB)", "SSIM", "s/image"]
        rows = [[_method_name(r), _fmt(r["psnr"]), _fmt(r["ssim"], 4), _fmt(r["seconds"], 3)] for r in run["summary"]]
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _steps_table(run: dict) -> str | None:
    rims = [r for r in run["summary"] if r.get("psnr_steps")]
    if not rims:
        return None
    n = max(len(r["psnr_steps"]) for r in rims)
    header = ["step"] + [r["method"] for r in rims]
    rows = []
    for t in range(n):
        cells = [str(t + 1)]
        for r in rims:
            if t >= len(r["psnr_steps"]):
                cells.append("")
            elif r.get("psnr_steps_std"):
                cells.append(f"{r['psnr_steps'][t]:.2f} ± {r['psnr_steps_std'][t]:.2f}")
            else:
                cells.append(f"{r['psnr_steps'][t]:.2f}")
        rows.append(cells)
    return _md_table(header, rows)


def report_title(report: dict) -> str:
    """The set, and the task where the set's own task is not the one run ("cbsd68 deblurring")."""
    return report["benchmark"] + (" deblurring" if report.get("task") == "deblur" else "")


def render_markdown(report: dict, level: int = 2, steps: bool = True) -> str:
    """The report as markdown: provenance, one summary table per run, PSNR by step."""
    h = "#" * level
    m = report["machine"]
    models = ", ".join(f"`{s['label']}` (sha256 `{s['sha256'][:12]}`, T={s['steps']})" for s in report["models"])
    title = report_title(report)
    lines = [f"{h} {title}", "",
             f"- command: `{report['command']}`",
             f"- models: {models}",
             f"- machine: {m['cpu']} ({m['cpu_count']} logical CPUs, {m['torch_threads']} torch threads), "
             f"device {m['device']}{' ' + m['gpu'] if m.get('gpu') else ''}; torch {m['torch']}; {m['platform']}"
             + (f"; load average {m['load_avg_1min']} at start" if "load_avg_1min" in m else ""),
             f"- date: {report['date']}; rimcli {report['rimcli']}",
             f"- seed: {report['protocol']['seed']}", ""]
    for run in report["runs"]:
        lines += [f"{h}# {title} {run['label']}", "", f"Protocol: {run['variant']}.", ""]
        lines += [_md_table(*summary_table(run)), ""]
        table = _steps_table(run) if steps else None
        if table:
            lines += ["<details><summary>PSNR (dB) by RIM step</summary>", "", table, "", "</details>", ""]
    if report.get("baselines"):
        lines += ["Baseline settings:", ""] + [f"- {k}: {v}" for k, v in report["baselines"].items()] + [""]
    return "\n".join(lines)


def write_csv(report: dict, path: str | Path) -> None:
    write_bytes(path, render_csv(report))


def render_csv(report: dict) -> str:
    """The report's rows as CSV text: per image and method, or per step for projections."""
    f = io.StringIO(newline="")  # the csv module's own line endings (\r\n), untranslated
    w = csv.writer(f)
    if report["task"] == "cs":
        w.writerow(["ensemble", "ratio", "method", "step", "psnr_mean", "psnr_std", "patches"])
        for run in report["runs"]:
            s = run["setting"]
            for r in run["summary"]:
                if r.get("psnr_steps"):
                    for t, (mu, sd) in enumerate(zip(r["psnr_steps"], r["psnr_steps_std"], strict=True), 1):
                        w.writerow([s["ensemble"], s["ratio"], r["method"], t, f"{mu:.4f}", f"{sd:.4f}", run["patches"]])
                else:
                    w.writerow([s["ensemble"], s["ratio"], r["method"], 0, f"{r['psnr']:.4f}", f"{r['psnr_std']:.4f}",
                                run["patches"]])
        return f.getvalue()
    w.writerow(["benchmark", "setting", "image", "method", "psnr", "ssim", "seconds"])
    for run in report["runs"]:
        for im in run["images"]:
            for method, r in im["methods"].items():
                w.writerow([report["benchmark"], run["label"], im["name"], method, f"{r['psnr']:.4f}",
                            f"{r['ssim']:.6f}", f"{r['seconds']:.4f}"])
    return f.getvalue()


def _finite(obj: Any) -> Any:
    """Strict JSON: a non-finite float (PSNR of a perfect match is inf) becomes null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def report_json(report: dict) -> str:
    return json.dumps(_finite(report), indent=1, allow_nan=False) + "\n"


def write_json(report: dict, path: str | Path) -> None:
    write_bytes(path, report_json(report))


def plot_convergence(report: dict, out: Path) -> list[Path]:
    """PSNR against RIM step, baselines as horizontal lines (the paper's Figure 2, routinely)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if report["task"] == "cs":
        by_kind: dict[str, list[dict]] = {}
        for run in report["runs"]:
            by_kind.setdefault(run["setting"]["ensemble"], []).append(run)
        for kind, runs in by_kind.items():
            fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
            for ax, run in zip(axes[0], runs, strict=True):
                _draw_curves(ax, run, band=True)
                ax.set_title(run["label"])
            fig.tight_layout()
            paths.append(_save(fig, out / f"convergence_{kind}.png"))
        return paths
    for run in report["runs"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        _draw_curves(ax, run, band=False)
        ax.set_title(f"{report['benchmark']} {run['label']}")
        fig.tight_layout()
        paths.append(_save(fig, out / f"convergence_{run['label'].replace('=', '').replace(' ', '_')}.png"))
    return paths


def _draw_curves(ax, run: dict, band: bool) -> None:  # noqa: ANN001 - a matplotlib Axes
    colors = iter(["C0", "C1", "C2", "C4", "C5", "C6"])
    for r in run["summary"]:
        if r.get("psnr_steps"):
            t = np.arange(1, len(r["psnr_steps"]) + 1)
            mu = np.array(r["psnr_steps"])
            line = ax.plot(t, mu, marker=".", color=next(colors), label=f"RIM {r['method']}")[0]
            if band and r.get("psnr_steps_std"):
                sd = np.array(r["psnr_steps_std"])
                ax.fill_between(t, mu - sd, mu + sd, color=line.get_color(), alpha=0.12)
            ax.axvline(r["steps"], color=line.get_color(), linestyle=":", linewidth=0.8)
    styles = iter(zip(["C3", "C7", "C8", "C9", "C5", "0.3"], ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), "--"],
                      strict=True))
    for r in run["summary"]:
        if r["kind"] != "rim" and r["psnr"] is not None and math.isfinite(r["psnr"]):
            color, style = next(styles, ("0.3", "--"))
            ax.axhline(r["psnr"], color=color, linestyle=style, linewidth=1.2, label=_method_name(r))
    ax.set_xlabel("RIM step")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Render `fig` in memory in the format `path` names and write it with the atomic writer."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def write_outputs(report: dict, out: Path) -> list[Path]:
    """results.json, results.csv, results.md and the convergence plots in `out` (created, as
    every file's folder, by `write_bytes`)."""
    write_json(report, out / "results.json")
    write_csv(report, out / "results.csv")
    write_bytes(out / "results.md", render_markdown(report, level=1) + "\n")
    return [out / "results.json", out / "results.csv", out / "results.md"] + plot_convergence(report, out)
