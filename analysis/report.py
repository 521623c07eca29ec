"""Learning curves and score tables of many runs (agents x games x seeds), from their CSVs.

python -m report checkpoints/ --out report/

Finds every results CSV under the given directories and groups the runs by the run record
beside each CSV (agent, game, seed; see run_record.py), never by their paths. Writes to --out:

* learning_curves.png: one panel per game, one line per agent: the evaluation return against
  environment frames, mean over seeds with a bootstrap confidence band. A run still going is
  included up to its last iteration. learning_curve_<Game>.png: each panel on its own.
* scores.md, scores.csv: per agent and game, the final score (the evaluation return of each
  run's last evaluated iteration) as mean ± std over seeds, and its human-normalised score
  (HNS, published scores in atari_scores.py).
* scores.md, aggregates.csv: per agent, the median and mean HNS over games and the
  interquartile mean (IQM) of all runs' HNS, with stratified bootstrap confidence intervals
  (Agarwal et al. 2021).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import pathlib
import re
import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from absl import flags

from analysis import atari_scores, score_statistics
from experiment import run_record
from experiment.checkpoint import atomic_write
from experiment.command_line import run_cli
from experiment.errors import UserError

FLAGS = flags.FLAGS

RETURN_COLUMN = "eval/episode_return"
REQUIRED_COLUMNS = ("iteration", "step", RETURN_COLUMN)
PANEL_INCHES = (4.5, 3.2)  # One game's panel in learning_curves.png.
SINGLE_INCHES = (6.4, 4.8)  # learning_curve_<Game>.png.
DPI = 100
MAX_COLUMNS = 4


def file_safe(game: str) -> str:
    """A game's name as part of a file name: "MinAtar/Breakout-v1" -> "MinAtar_Breakout-v1"."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", game)


class ReportError(UserError):
    """The runs to report on are missing or not results of this library."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's evaluation history: the rows of its CSV, in iteration order."""

    record: run_record.RunRecord
    csv_path: pathlib.Path
    iterations: np.ndarray  # [T] int
    frames: np.ndarray  # [T] environment frames at the end of each iteration
    eval_returns: np.ndarray  # [T] mean evaluation return; NaN where no game finished

    @property
    def finished(self) -> bool:
        return len(self.iterations) > 0 and self.iterations[-1] >= self.record.num_iterations

    def final_score(self) -> tuple[float, float] | None:
        """(score, frames) of the last iteration with a finished evaluation game, or None."""
        evaluated = np.flatnonzero(np.isfinite(self.eval_returns))
        if evaluated.size == 0:
            return None
        last = evaluated[-1]
        return float(self.eval_returns[last]), float(self.frames[last])


# --------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------


def find_results_csvs(roots: Sequence[pathlib.Path], exclude: pathlib.Path) -> list[pathlib.Path]:
    """Every *.csv under `roots`, except those under `exclude` (the report's own output)."""
    exclude = exclude.resolve()
    found = set()
    for root in roots:
        if not root.exists():
            raise ReportError(f"{root} does not exist")
        paths = [root] if root.is_file() else root.rglob("*.csv")
        for path in paths:
            if not path.resolve().is_relative_to(exclude):
                found.add(path)
    return sorted(found)


def read_run(csv_path: pathlib.Path) -> Run:
    """Reads one results CSV and the run record beside it; one-line ReportError otherwise."""
    record = run_record.read(csv_path)
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ReportError(f"{csv_path} cannot be read ({error})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ReportError(
            f"{csv_path} is not a results CSV of this library: no column {', '.join(missing)}"
        )
    try:
        iterations = np.array([int(row["iteration"]) for row in rows], dtype=np.int64)
        frames = np.array([_frames(row, record) for row in rows], dtype=np.float64)
        returns = np.array([_number(row[RETURN_COLUMN]) for row in rows], dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise ReportError(f"{csv_path} has a value that is not a number ({error})") from None
    order = np.argsort(iterations, kind="stable")
    return Run(record, csv_path, iterations[order], frames[order], returns[order])


def _frames(row: dict[str, str], record: run_record.RunRecord) -> float:
    # Rows written before frames were logged (a run resumed across that change) have none.
    if row.get("frames"):
        return float(row["frames"])
    return float(row["step"]) * record.frames_per_step


def _number(text: str | None) -> float:
    """An evaluation return; empty means no evaluation game finished in that iteration."""
    return float(text) if text else math.nan


def load_runs(roots: Sequence[pathlib.Path], exclude: pathlib.Path) -> list[Run]:
    paths = find_results_csvs(roots, exclude)
    if not paths:
        where = ", ".join(str(r) for r in roots)
        raise ReportError(
            f"no CSV found under {where}; train first (python -m agents.dqn.run_atari) or "
            "point at the --checkpoint_dir of the runs"
        )
    runs = [read_run(path) for path in paths]
    seen: dict[tuple[str, str, int], pathlib.Path] = {}
    for run in runs:
        other = seen.setdefault(run.record.identity, run.csv_path)
        if other != run.csv_path:
            raise ReportError(
                f"{other} and {run.csv_path} are both {run.record.describe()}; "
                "report on one of them (a copied run?)"
            )
    return runs


def group_runs(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    """(agent or agent-label, game) -> its runs, ordered by seed."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.record.identity):
        groups[(run.record.variant, run.record.environment_name)].append(run)
    return dict(groups)


# --------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Curve:
    """Mean over seeds at each iteration some seed has evaluated: arrays of shape [P]."""

    frames: np.ndarray  # mean over the seeds present
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    num_seeds: np.ndarray


def learning_curve(
    runs: Sequence[Run], num_samples: int, confidence: float, rng: np.random.Generator
) -> Curve:
    """Aligns seeds by iteration (their frame counts may differ a little: parallel actors
    overshoot an iteration by a chunk); an unfinished seed counts up to its last iteration."""
    iterations = np.unique(np.concatenate([r.iterations for r in runs]))
    returns = np.full((len(runs), len(iterations)), np.nan)
    frames = np.full((len(runs), len(iterations)), np.nan)
    for i, run in enumerate(runs):
        columns = np.searchsorted(iterations, run.iterations)
        returns[i, columns] = run.eval_returns
        frames[i, columns] = run.frames
    present = np.isfinite(returns)
    keep = present.any(axis=0)
    returns, frames, present = returns[:, keep], frames[:, keep], present[:, keep]
    low = np.full(returns.shape[1], np.nan)
    high = np.full(returns.shape[1], np.nan)
    # Points with the same seeds present share one vectorised bootstrap.
    for pattern in np.unique(present, axis=1).T:
        columns = np.flatnonzero((present == pattern[:, None]).all(axis=0))
        values = returns[np.ix_(pattern, columns)]
        low[columns], high[columns] = score_statistics.bootstrap_mean_interval(
            values, num_samples, confidence, rng
        )
    return Curve(
        frames=_masked_mean(frames, present),
        mean=_masked_mean(returns, present),
        low=low,
        high=high,
        num_seeds=present.sum(axis=0),
    )


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the entries where mask is True: [runs, points] -> [points]."""
    return np.where(mask, values, 0.0).sum(axis=0) / mask.sum(axis=0)


def plot_learning_curves(
    curves: dict[tuple[str, str], Curve],
    agents: Sequence[str],
    games: Sequence[str],
    confidence: float,
):
    """One panel per game (up to MAX_COLUMNS per row), one line per agent, shared legend."""
    import matplotlib.pyplot as plt

    columns = min(MAX_COLUMNS, len(games))
    rows = math.ceil(len(games) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows),
        dpi=DPI,
        squeeze=False,
        layout="constrained",
    )
    for axis, game in zip(axes.flat, games, strict=False):
        _plot_panel(axis, game, curves, agents)
    for axis in axes.flat[len(games) :]:
        axis.set_visible(False)
    # One entry per agent, from whichever panel drew it (an agent may miss some games).
    entries = {}
    for axis in axes.flat[: len(games)]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    labels = [agent for agent in agents if agent in entries]
    figure.legend(
        [entries[label] for label in labels],
        labels,
        loc="outside lower center",
        ncols=max(1, min(len(labels), 6)),
    )
    figure.suptitle(_band_caption(confidence))
    return figure


def plot_game(
    curves: dict[tuple[str, str], Curve], agents: Sequence[str], game: str, confidence: float
):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=SINGLE_INCHES, dpi=DPI, layout="constrained")
    _plot_panel(axis, game, curves, agents)
    axis.legend(loc="best")
    figure.suptitle(_band_caption(confidence))
    return figure


def _band_caption(confidence: float) -> str:
    return f"Mean over seeds, {confidence * 100:g}% bootstrap confidence band"


def _plot_panel(axis, game: str, curves: dict[tuple[str, str], Curve], agents: Sequence[str]):
    from matplotlib.ticker import EngFormatter

    for index, agent in enumerate(agents):
        curve = curves.get((agent, game))
        if curve is None or curve.frames.size == 0:
            continue
        color = f"C{index % 10}"  # An agent keeps its colour in every panel.
        few = curve.frames.size <= 30
        axis.plot(curve.frames, curve.mean, color=color, label=agent, marker="o" if few else "")
        axis.fill_between(curve.frames, curve.low, curve.high, color=color, alpha=0.25, lw=0)
    axis.set_title(game)
    axis.set_xlabel("environment frames")
    axis.set_ylabel("evaluation return")
    axis.xaxis.set_major_formatter(EngFormatter())
    axis.grid(alpha=0.3)


# --------------------------------------------------------------------------------------
# Score tables
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GameScore:
    """One agent on one game: the final scores of its seeds."""

    agent: str
    game: str
    num_seeds: int  # seeds with a final score
    num_unfinished: int  # seeds whose run has not reached its last iteration
    frames: float  # mean frames at which the final scores were taken
    score_mean: float
    score_std: float  # NaN with one seed
    hns_mean: float  # NaN for a game without published scores
    hns_std: float
    hns_per_seed: np.ndarray  # [num_seeds]


def game_score(agent: str, game: str, runs: Sequence[Run]) -> GameScore:
    finals = [score for run in runs if (score := run.final_score()) is not None]
    scores = np.array([score for score, _ in finals], dtype=np.float64)
    frames = np.array([frame for _, frame in finals], dtype=np.float64)
    unfinished = sum(not run.finished for run in runs)
    if scores.size == 0:
        nan = math.nan
        return GameScore(agent, game, 0, unfinished, nan, nan, nan, nan, nan, np.zeros(0))
    hns = atari_scores.human_normalized_score(game, scores)
    score_mean, score_std = score_statistics.mean_and_std(scores)
    hns_mean, hns_std = score_statistics.mean_and_std(hns)
    return GameScore(
        agent,
        game,
        int(scores.size),
        unfinished,
        float(frames.mean()),
        score_mean,
        score_std,
        hns_mean,
        hns_std,
        np.asarray(hns, dtype=np.float64),
    )


@dataclasses.dataclass(frozen=True)
class AgentAggregate:
    """One agent across the games it has human-normalised scores on."""

    agent: str
    games: tuple[str, ...]
    values: dict[str, float]  # "median", "mean", "iqm" -> HNS
    intervals: dict[str, tuple[float, float]]


def aggregate_agent(
    agent: str,
    scores: Sequence[GameScore],
    num_samples: int,
    confidence: float,
    rng: np.random.Generator,
) -> AgentAggregate | None:
    usable = [s for s in scores if s.num_seeds > 0 and np.isfinite(s.hns_mean)]
    if not usable:
        return None
    per_game = [s.hns_per_seed for s in usable]
    values, intervals = {}, {}
    for name, aggregate in score_statistics.AGGREGATES.items():
        values[name] = float(aggregate(per_game))
        intervals[name] = score_statistics.stratified_bootstrap_interval(
            aggregate, per_game, num_samples, confidence, rng
        )
    return AgentAggregate(agent, tuple(s.game for s in usable), values, intervals)


def notes(runs: Sequence[Run], scores: Sequence[GameScore]) -> list[str]:
    """One line per thing a reader of the tables must know."""
    lines = []
    for game in sorted({s.game for s in scores}):
        if not atari_scores.has_published_scores(game):
            lines.append(
                f"{game}: no published random and human scores, so its HNS is left empty "
                "and it is not in the aggregates."
            )
    for run in runs:
        if run.final_score() is None:
            lines.append(
                f"{run.record.describe()} ({run.csv_path}): no evaluation game finished in "
                "any of its iterations (--num_eval_steps too short for a game?), so it has no "
                "final score."
            )
        elif not run.finished:
            done = int(run.iterations[-1]) if run.iterations.size else 0
            lines.append(
                f"{run.record.describe()}: unfinished, iteration {done} of "
                f"{run.record.num_iterations}; its latest evaluation is used."
            )
    return lines


def _format_pm(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return ""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def _format_frames(frames: float) -> str:
    """200M, 12.5M, 20k: the unit papers use for frames."""
    if not math.isfinite(frames):
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if frames >= scale:
            return f"{frames / scale:.3g}{unit}"
    return f"{frames:.0f}"


def scores_markdown(
    scores: Sequence[GameScore],
    aggregates: Sequence[AgentAggregate],
    note_lines: Sequence[str],
    confidence: float,
    num_samples: int,
) -> str:
    lines = [
        "# Scores",
        "",
        "Final score: the evaluation return (whole games, raw score) of each run's last "
        "evaluated iteration, mean ± std over seeds. HNS = (score − random) / (human − random), "
        "with the published random and human scores of Badia et al. 2020b (atari_scores.py).",
        "",
        "| agent | game | seeds | frames | score | HNS |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.agent} | {s.game} | {s.num_seeds} | {_format_frames(s.frames)} | "
            f"{_format_pm(s.score_mean, s.score_std, 1)} | "
            f"{_format_pm(s.hns_mean, s.hns_std, 3)} |"
        )
    percent = f"{confidence * 100:g}%"
    lines += [
        "",
        "## Across games (human-normalised)",
        "",
        f"Median and mean over games of each game's mean HNS; IQM: mean of the middle 50% of "
        f"all runs' HNS. [{percent} stratified bootstrap confidence interval, {num_samples} "
        "resamples of the seeds within each game (Agarwal et al. 2021).]",
        "",
        "| agent | games | median HNS | mean HNS | IQM HNS |",
        "|---|---:|---:|---:|---:|",
    ]
    for a in aggregates:
        cells = [
            f"{a.values[k]:.3f} [{a.intervals[k][0]:.3f}, {a.intervals[k][1]:.3f}]"
            for k in ("median", "mean", "iqm")
        ]
        lines.append(f"| {a.agent} | {len(a.games)} | {' | '.join(cells)} |")
    if len({a.games for a in aggregates}) > 1:
        lines += ["", "The agents were scored on different games: compare the rows with care."]
    if note_lines:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in note_lines]
    return "\n".join(lines) + "\n"


def scores_csv(scores: Sequence[GameScore]) -> str:
    rows = [
        {
            "agent": s.agent,
            "game": s.game,
            "num_seeds": s.num_seeds,
            "num_unfinished": s.num_unfinished,
            "frames": _csv_number(s.frames),
            "score_mean": _csv_number(s.score_mean),
            "score_std": _csv_number(s.score_std),
            "hns_mean": _csv_number(s.hns_mean),
            "hns_std": _csv_number(s.hns_std),
        }
        for s in scores
    ]
    return _csv_text(rows)


def aggregates_csv(aggregates: Sequence[AgentAggregate]) -> str:
    rows = []
    for a in aggregates:
        row = {"agent": a.agent, "num_games": len(a.games)}
        for name in ("median", "mean", "iqm"):
            row[f"{name}_hns"] = _csv_number(a.values[name])
            row[f"{name}_hns_low"] = _csv_number(a.intervals[name][0])
            row[f"{name}_hns_high"] = _csv_number(a.intervals[name][1])
        rows.append(row)
    return _csv_text(rows)


def _csv_number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else ""


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Report:
    scores: list[GameScore]
    aggregates: list[AgentAggregate]
    curves: dict[tuple[str, str], Curve]
    notes: list[str]
    agents: list[str]
    games: list[str]


def build_report(
    runs: Sequence[Run], num_samples: int, confidence: float, rng: np.random.Generator
) -> Report:
    groups = group_runs(runs)
    agents = sorted({agent for agent, _ in groups})
    games = sorted({game for _, game in groups})
    curves = {
        key: learning_curve(group, num_samples, confidence, rng) for key, group in groups.items()
    }
    scores = [game_score(agent, game, group) for (agent, game), group in groups.items()]
    aggregates = []
    for agent in agents:
        mine = [s for s in scores if s.agent == agent]
        if (result := aggregate_agent(agent, mine, num_samples, confidence, rng)) is not None:
            aggregates.append(result)
    return Report(scores, aggregates, curves, notes(runs, scores), agents, games)


def write_report(report: Report, out: pathlib.Path, confidence: float, num_samples: int):
    """Writes every file atomically; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # No display: the report runs on servers and in CI.
    import matplotlib.pyplot as plt

    texts = {
        "scores.md": scores_markdown(
            report.scores, report.aggregates, report.notes, confidence, num_samples
        ),
        "scores.csv": scores_csv(report.scores),
        "aggregates.csv": aggregates_csv(report.aggregates),
    }
    written = []
    for name, text in texts.items():
        atomic_write(out / name, lambda temp, text=text: pathlib.Path(temp).write_text(text))
        written.append(out / name)
    figures = {
        "learning_curves.png": plot_learning_curves(
            report.curves, report.agents, report.games, confidence
        )
    }
    for game in report.games:
        figures[f"learning_curve_{file_safe(game)}.png"] = plot_game(
            report.curves, report.agents, game, confidence
        )
    for name, figure in figures.items():
        atomic_write(out / name, lambda temp, f=figure: f.savefig(temp, format="png", dpi=DPI))
        plt.close(figure)
        written.append(out / name)
    return written


def define_flags() -> None:
    """The CLI's flags (defined on demand, so importing the module defines none)."""
    flags.DEFINE_string("out", "./report", "Directory the figures and tables are written to.")
    flags.DEFINE_integer(
        "bootstrap_samples",
        2000,
        "Bootstrap resamples behind each confidence interval; more gives steadier interval ends.",
        100,
    )
    flags.DEFINE_float(
        "confidence", 0.95, "Coverage of the confidence intervals and bands, e.g. 0.95.", 0.5, 0.999
    )
    flags.DEFINE_integer(
        "seed", 0, "Seed of the bootstrap resampling, so a report is reproducible."
    )


def main() -> None:
    # run_cli has parsed the flags; what absl leaves are the directories to report on.
    roots = [pathlib.Path(p) for p in FLAGS(sys.argv)[1:]] or [pathlib.Path("checkpoints")]
    out = pathlib.Path(FLAGS.out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out: {out} is not a directory")
    runs = load_runs(roots, exclude=out)
    rng = np.random.default_rng(FLAGS.seed)
    report = build_report(runs, FLAGS.bootstrap_samples, FLAGS.confidence, rng)
    for line in report.notes:
        print(f"note: {line}", file=sys.stderr)
    for path in write_report(report, out, FLAGS.confidence, FLAGS.bootstrap_samples):
        print(path)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
