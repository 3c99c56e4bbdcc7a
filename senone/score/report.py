"""Score files of a decode directory, RESULTS tables and plots.

``score_and_write`` leaves what Kaldi's scoring leaves a user to open: the ``compute-wer`` lines,
the per-utterance alignments in ``wer_details/per_utt`` layout, the filtered texts, plus the pinyin
syllable error rates (Mandarin) and one ``scores.json`` with every number, for tables and plots.
All files are written atomically.

Table rows are plain dicts; ``results_row`` builds one from the ``scores.json`` dicts of a system's
splits with the column names the plots look for: ``<split>_cer`` (or ``_wer``),
``<split>_syl_tonal``, ``<split>_syl_toneless``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from senone import SenoneError
from senone.io import atomic_path, write_json, write_text
from senone.score.error_rate import ScoringMode, compute_error_rate, format_per_utt
from senone.score.syllables import syllable_error_rates
from senone.score.tokenize import Tokenizer

__all__ = [
    "score_and_write",
    "read_text_map",
    "results_row",
    "write_results_table",
    "plot_results",
    "plot_acwt_sweep",
    "plot_nn_curves",
    "plot_paper_tables",
    "DEFAULT_PLOT_SUFFIXES",
]

log = logging.getLogger(__name__)


def read_text_map(path: str | os.PathLike) -> dict[str, str]:
    """Read a Kaldi ``text``-style file (``utt-id text...`` per line; text may be empty)."""
    path = Path(path)
    if not path.is_file():
        raise SenoneError(f"{path}: transcript file not found; check the path or run the stage that writes it")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            utt = parts[0]
            if utt in out:
                raise SenoneError(f"{path}:{lineno}: utterance id {utt!r} appears twice; ids must be unique")
            out[utt] = parts[1] if len(parts) > 1 else ""
    return out


def _text_file(texts: Mapping[str, str]) -> str:
    lines = []
    for utt in sorted(texts):
        text = " ".join(texts[utt].split())
        lines.append(f"{utt} {text}" if text else utt)
    return "\n".join(lines) + ("\n" if lines else "")


def score_and_write(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    out_dir: str | os.PathLike,
    *,
    ref_syllables: Mapping[str, str | Sequence[str]] | None = None,
    hyp_syllables: Mapping[str, Sequence[str]] | None = None,
    language: Literal["zh", "en"] = "zh",
    mode: ScoringMode = "all",
    tokenizer: Tokenizer | None = None,
    tone_sandhi: bool = False,
    bootstrap_replications: int = 10000,
    seed: int = 0,
) -> dict:
    """Score hypotheses against references and write the score files into ``out_dir``.

    ``language="zh"``: CER over Kaldi-style character tokens (``cer.txt``) plus tonal and toneless
    pinyin syllable error rates (``syllable_er.txt``); ``ref_syllables`` (utterance → syllables
    actually spoken) replaces converting the reference text; with ``hyp_syllables`` as well (both as
    lexicon phone keys) the hypothesis side is the decoder's chosen pronunciation. ``language="en"``: WER over words
    (``wer.txt``), no syllables. Both write ``per_utt.txt``, ``ref.txt``, ``hyp.txt`` (id + text,
    sorted) and ``scores.json``; the same dict is returned.

    ``mode`` treats references without a hypothesis as in ``compute_error_rate`` (default: scored
    as empty, flagged ``[PARTIAL]``). The rate of a set without reference tokens is written as
    ``nan``/``inf`` in text files and ``null`` with a note in JSON. A 95% bootstrap interval of
    the main rate goes into ``scores.json`` (``bootstrap_replications=0`` turns it off).
    """
    if language not in ("zh", "en"):
        raise SenoneError(f"scoring language {language!r} is not supported; use 'zh' (CER) or 'en' (WER)")
    unit = "char" if language == "zh" else "word"
    if tokenizer is None:
        tokenizer = Tokenizer(unit)
    elif tokenizer.unit != unit:
        raise SenoneError(f"language {language!r} scores with a {unit!r} tokenizer, got a {tokenizer.unit!r} one")
    metric = "CER" if language == "zh" else "WER"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    ref_tok = {u: tokenizer(t) for u, t in refs.items()}
    hyp_tok = {u: tokenizer(t) for u, t in hyps.items()}
    result = compute_error_rate(ref_tok, hyp_tok, name=metric, mode=mode)
    total = result.total

    main = total.to_dict()
    if bootstrap_replications > 0:
        main["bootstrap"] = result.bootstrap_ci(replications=bootstrap_replications, seed=seed)
        if main["bootstrap"] is None:
            main["bootstrap_note"] = "no bootstrap interval: the set is empty or has utterances with empty references"

    scores: dict = {
        "language": language,
        "metric": metric,
        "unit": unit,
        "mode": mode,
        "num_refs": len(refs),
        "num_hyps": len(hyps),
        "missing_hyp": result.missing_hyp,
        "extra_hyp": result.extra_hyp,
        metric.lower(): main,
    }
    notes = []
    if result.missing_hyp:
        notes.append(
            f"{len(result.missing_hyp)} reference(s) had no hypothesis: "
            + ("scored as empty (all deletions)" if mode == "all" else "left out")
        )
    if result.extra_hyp:
        notes.append(f"{len(result.extra_hyp)} hypothesis/-es had no reference and were not scored")

    per_utt = {
        utt: {
            "ref_count": ua.stats.ref_count,
            "errors": ua.stats.errors,
            "ins": ua.stats.ins,
            "del": ua.stats.dels,
            "sub": ua.stats.subs,
            **({"absent": True} if ua.absent else {}),
        }
        for utt, ua in result.per_utt.items()
    }

    files = {f"{metric.lower()}.txt": "\n".join(result.report_lines()) + "\n"}

    if language == "zh":
        syl = syllable_error_rates(
            refs, hyps, ref_syllables=ref_syllables, hyp_syllables=hyp_syllables, mode=mode, tone_sandhi=tone_sandhi,
            tokenizer=tokenizer, log_mismatches=False,
        )
        scores["syllables"] = {
            "ref_source": syl.ref_source,
            "hyp_source": syl.hyp_source,
            "style": ("lexicon phone keys, initial_final+tone" if syl.hyp_source == "decoder path"
                      else "pypinyin TONE3, neutral tone 5"),
            "tone_sandhi": tone_sandhi,
            "tonal": syl.tonal.total.to_dict(),
            "toneless": syl.toneless.total.to_dict(),
        }
        for utt, entry in per_utt.items():
            t = syl.tonal.per_utt.get(utt)
            tl = syl.toneless.per_utt.get(utt)
            if t is not None and tl is not None:
                entry["syl_ref_count"] = t.stats.ref_count
                entry["syl_tonal_errors"] = t.stats.errors
                entry["syl_toneless_errors"] = tl.stats.errors
        files["syllable_er.txt"] = "\n".join(syl.report_lines()) + "\n"
    elif ref_syllables is not None:
        log.warning("ref_syllables given for language 'en'; syllable rates are only computed for 'zh'")

    if notes:
        scores["notes"] = notes
    scores["per_utt"] = per_utt
    files["per_utt.txt"] = format_per_utt(result.per_utt)
    files["ref.txt"] = _text_file(refs)
    files["hyp.txt"] = _text_file(hyps)
    scores["files"] = sorted([*files, "scores.json"])

    for name, text in files.items():
        write_text(out_dir / name, text)
    write_json(out_dir / "scores.json", scores)
    log.info("%s: %s", out_dir, total.line())
    return scores


def results_row(system: str, scores_by_split: Mapping[str, Mapping], **extra: object) -> dict:
    """One RESULTS-table row from ``score_and_write`` dicts keyed by split (``{"dev": ..., "test": ...}``).

    Columns, in order: ``system``, the ``extra`` columns, ``<split>_<cer|wer>`` for every split,
    then ``<split>_syl_tonal`` and ``<split>_syl_toneless`` where syllable scores exist. Rates
    are percentages (``None`` where undefined).
    """
    row: dict = {"system": system, **extra}
    for split, sc in scores_by_split.items():
        metric = str(sc["metric"]).lower()
        row[f"{split}_{metric}"] = sc[metric]["rate"]
    for kind in ("tonal", "toneless"):
        for split, sc in scores_by_split.items():
            if "syllables" in sc:
                row[f"{split}_syl_{kind}"] = sc["syllables"][kind]["rate"]
    return row


def _columns(rows: Sequence[Mapping]) -> list[str]:
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _md_cell(v: object, float_fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return float_fmt.format(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def write_results_table(
    rows: Sequence[Mapping],
    out_md: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    float_fmt: str = "{:.2f}",
    title: str | None = None,
) -> list[str]:
    """Write ``rows`` as a markdown table and a CSV file; return the column order used.

    Columns are the rows' keys in order of first appearance; a key missing from a row is an
    empty cell (``-`` in markdown). Markdown rounds floats with ``float_fmt``; CSV keeps them whole.
    Numeric columns are right-aligned in markdown.
    """
    if not rows:
        raise SenoneError(f"{out_md}: no result rows to tabulate; score at least one system first")
    cols = _columns(rows)
    numeric = [any(_is_number(r.get(c)) for r in rows) for c in cols]
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_md_cell(r.get(c), float_fmt) for c in cols) + " |")
    write_text(out_md, "\n".join(lines) + "\n")

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        writer.writerow(cells)
    write_text(out_csv, buf.getvalue())
    return cols


#: Column-name endings ``plot_results`` plots by default (toneless rates are left to the table).
DEFAULT_PLOT_SUFFIXES: tuple[str, ...] = ("_cer", "_wer", "_syl_tonal")


def _metric_label(col: str) -> str:
    for suffix, label in (("_syl_tonal", "tonal syllable ER"), ("_syl_toneless", "toneless syllable ER")):
        if col.endswith(suffix):
            return f"{col[: -len(suffix)]} {label}"
    for suffix in ("_cer", "_wer"):
        if col.endswith(suffix):
            return f"{col[: -len(suffix)]} {suffix[1:].upper()}"
    return col


def _new_figure(width: float, height: float):
    # The object-oriented API with an explicit Agg canvas: no pyplot state, no GUI backend, safe in
    # worker processes and threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, out_png: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def plot_results(
    table_rows: Sequence[Mapping],
    out_png: str | os.PathLike,
    *,
    metrics: Sequence[str] | None = None,
    system_key: str = "system",
    title: str | None = None,
    ylabel: str = "error rate (%)",
) -> list[str]:
    """Grouped bar chart: one group per system (row), one bar per metric column; return the metrics.

    By default the metrics are the columns ending in ``_cer``, ``_wer`` or ``_syl_tonal`` that hold
    a number in at least one row (so dev/test CER and, where present, tonal syllable ER). Missing
    or undefined values leave a gap. Values are printed above the bars.
    """
    if not table_rows:
        raise SenoneError(f"{out_png}: no result rows to plot; score at least one system first")
    cols = _columns(table_rows)
    if metrics is None:
        metrics = [
            c
            for suffix in DEFAULT_PLOT_SUFFIXES
            for c in cols
            if c.endswith(suffix) and any(_is_number(r.get(c)) and math.isfinite(r.get(c)) for r in table_rows)
        ]
    else:
        unknown = [m for m in metrics if m not in cols]
        if unknown:
            raise SenoneError(f"{out_png}: metric column(s) {unknown} not in the table; columns are {cols}")
    metrics = list(metrics)
    if not metrics:
        raise SenoneError(
            f"{out_png}: no numeric *_cer/*_wer/*_syl_tonal columns among {cols}; pass metrics=[...]"
        )

    systems = [str(r.get(system_key, i)) for i, r in enumerate(table_rows)]
    n_sys, n_met = len(systems), len(metrics)
    fig = _new_figure(max(5.0, 0.9 + n_sys * (0.35 * n_met + 0.4)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / n_met
    top = 0.0
    for j, metric in enumerate(metrics):
        xs, ys = [], []
        for i, r in enumerate(table_rows):
            v = r.get(metric)
            if _is_number(v) and math.isfinite(v):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(v))
        hatch = "//" if "_syl_" in metric else None
        bars = ax.bar(xs, ys, width=width * 0.95, label=_metric_label(metric), hatch=hatch, edgecolor="white")
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        top = max([top, *ys])
    ax.set_xticks(range(n_sys))
    ax.set_xticklabels(systems, rotation=30 if n_sys > 4 else 0, ha="right" if n_sys > 4 else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)  # headroom for the legend and value labels
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncol=min(n_met, 4), loc="upper right")
    if title:
        ax.set_title(title)
    _save_png(fig, out_png)
    return metrics


def plot_acwt_sweep(
    scores: Mapping[float, float],
    chosen: float,
    out_png: str | os.PathLike,
    *,
    metric: str = "CER",
    xlabel: str = "acoustic scale",
    title: str | None = None,
) -> None:
    """Error rate against the swept scale (e.g. acoustic scale on dev), the chosen value marked.

    ``scores`` maps scale → error rate in percent; ``chosen`` should be one of its keys (a value
    outside is still marked by a vertical line, with a warning).
    """
    pts = sorted((float(k), float(v)) for k, v in scores.items() if v is not None and math.isfinite(float(v)))
    if not pts:
        raise SenoneError(f"{out_png}: no finite sweep scores to plot; check that the sweep decoded anything")
    xs, ys = zip(*pts)
    fig = _new_figure(5.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.2)
    ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
    match = [y for x, y in pts if math.isclose(x, chosen, rel_tol=1e-9, abs_tol=1e-12)]
    if match:
        ax.plot([chosen], [match[0]], marker="*", markersize=12, color="tab:red", linestyle="none")
        ax.annotate(
            f"{chosen:g}: {match[0]:.2f}%",
            (chosen, match[0]),
            textcoords="offset points",
            xytext=(6, 8),
            fontsize=8,
            color="tab:red",
        )
    else:
        log.warning("chosen %s %g is not among the swept values %s", xlabel, chosen, [x for x, _ in pts])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _save_png(fig, out_png)


def plot_training_curve(
    passes: Sequence[Mapping],
    out_png: str | os.PathLike,
    *,
    x: str = "iteration",
    y: str = "like_per_frame",
    marker_key: str | None = "realigned",
    ylabel: str = "log-likelihood per frame",
    title: str | None = None,
) -> None:
    """A training curve (e.g. GMM log-likelihood per frame over the passes, realignment passes marked)."""
    if not passes:
        raise SenoneError(f"{out_png}: no training passes to plot")
    xs = [float(p[x]) for p in passes]
    ys = [float(p[y]) for p in passes]
    fig = _new_figure(5.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, ys, linewidth=1.2, color="tab:blue")
    if marker_key:
        marked = [(a, b) for a, b, p in zip(xs, ys, passes) if p.get(marker_key)]
        if marked:
            ax.plot(*zip(*marked), linestyle="none", marker="o", markersize=3, color="tab:orange", label=marker_key)
            ax.legend(fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _save_png(fig, out_png)


def plot_nn_curves(epochs: Sequence[Mapping], out_png: str | os.PathLike, *, title: str | None = None) -> None:
    """A network's training curves: frame cross-entropy and frame accuracy per epoch, training
    (chunks, as trained) beside validation (whole utterances, as decoded)."""
    if not epochs:
        raise SenoneError(f"{out_png}: no epochs to plot")
    xs = [int(e["epoch"]) for e in epochs]
    fig = _new_figure(8.0, 3.2)
    for col, (key, label) in enumerate((("loss", "cross-entropy per frame"), ("acc", "frame accuracy"))):
        ax = fig.add_subplot(1, 2, col + 1)
        for split, color in (("train", "tab:blue"), ("valid", "tab:orange")):
            ys = [float(e[f"{split}_{key}"]) for e in epochs]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=color, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    _save_png(fig, out_png)


def plot_paper_tables(tables: Sequence[tuple[int, str, Sequence[Mapping]]], out_png: str | os.PathLike, *,
                      title: str | None = None, metric: str = "cer") -> None:
    """One panel per paper table: our dev/test error rate (``metric``: the rows' ``dev_<metric>`` and
    ``test_<metric>``) per network in the paper's row order, and the paper's CER (HKUST, its own scale)
    as markers on a second axis, so the orderings can be compared."""
    if not tables:
        raise SenoneError(f"{out_png}: no tables to plot")
    fig = _new_figure(5.0 * len(tables), 4.6)
    fig.subplots_adjust(wspace=0.55)  # room for each panel's second axis and the next one's label
    for k, (number, name, rows) in enumerate(tables):
        ax = fig.add_subplot(1, len(tables), k + 1)
        xs = np.arange(len(rows))
        ax.bar(xs - 0.2, [r[f"dev_{metric}"] for r in rows], width=0.4, color="tab:blue", label="ours dev")
        ax.bar(xs + 0.2, [r[f"test_{metric}"] for r in rows], width=0.4, color="tab:orange", label="ours test")
        ax.set_xticks(xs)
        ax.set_xticklabels([r["network"] for r in rows], rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(f"{metric.upper()} % (ours)")
        ax.set_title(f"Table {number}: {name}", fontsize=8)
        twin = ax.twinx()
        twin.plot(xs, [r["paper_cer"] for r in rows], linestyle="none", marker="D", color="black", label="paper")
        twin.set_ylabel("CER % (paper, HKUST)", fontsize=7)
        twin.tick_params(labelsize=7)
        if k == 0:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = twin.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    _save_png(fig, out_png)
