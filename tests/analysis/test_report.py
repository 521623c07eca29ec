"""Tests of the results report: human-normalised scores, aggregates across games and their
bootstrap intervals, run records, and `python -m report` end to end on synthetic runs."""

from __future__ import annotations

import csv
import json
import math
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.stats
from cli_support import REPO, one_error_line, subprocess_env

import gym_env
from analysis import atari_scores, report, score_statistics
from experiment import run_record
from tracker import MetricsWriter

# --------------------------------------------------------------------------------------
# Human-normalised scores
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("game", "score", "expected"),
    [
        ("Pong", 0.0, 20.7 / 35.3),  # random -20.7, human 14.6
        ("Breakout", 16.1, 0.5),  # random 1.7, human 30.5: (16.1 - 1.7) / 28.8
        ("Skiing", -10717.5, 0.5),  # negative scores: random -17098.1, human -4336.9
        ("Breakout", 1.7, 0.0),
        ("Skiing", -4336.9, 1.0),
    ],
)
def test_human_normalized_score_against_hand_computed_values(game, score, expected):
    assert atari_scores.human_normalized_score(game, score) == pytest.approx(expected, abs=1e-12)


def test_human_normalized_score_of_arrays_and_of_games_without_published_scores():
    np.testing.assert_allclose(
        atari_scores.human_normalized_score("Breakout", np.array([1.7, 16.1, 30.5])),
        [0.0, 0.5, 1.0],
    )
    assert math.isnan(atari_scores.human_normalized_score("Tetris", 10.0))
    assert not atari_scores.has_published_scores("Tetris")


def test_published_scores_cover_the_57_games_under_their_library_names():
    table = atari_scores.RANDOM_AND_HUMAN_SCORES
    assert len(table) == 57
    assert set(table) <= set(gym_env.atari_game_names())
    assert all(human > random for random, human in table.values())


# --------------------------------------------------------------------------------------
# Aggregates across games
# --------------------------------------------------------------------------------------

# Four games of three runs. Game means: 2, 6, 1, 8.
HAND_SCORES = [
    np.array([1.0, 2.0, 3.0]),
    np.array([4.0, 5.0, 9.0]),
    np.array([0.0, 0.0, 3.0]),
    np.array([7.0, 8.0, 9.0]),
]


def test_aggregates_against_hand_computed_values():
    # Median of the game means (1, 2, 6, 8): (2 + 6) / 2.
    assert score_statistics.median_of_game_means(HAND_SCORES) == pytest.approx(4.0)
    # Mean of the game means: 17 / 4.
    assert score_statistics.mean_of_game_means(HAND_SCORES) == pytest.approx(4.25)
    # IQM of the 12 scores 0 0 1 | 2 3 3 4 5 7 | 8 9 9: three cut at each end, 24 / 6 left.
    assert score_statistics.pooled_interquartile_mean(HAND_SCORES) == pytest.approx(4.0)


def test_interquartile_mean_cuts_a_quarter_rounded_down_at_each_end():
    # n = 5: one value cut at each end.
    assert score_statistics.interquartile_mean(np.array([100.0, 1.0, 3.0, 2.0, 4.0])) == 3.0
    values = np.random.default_rng(0).standard_cauchy(size=(7, 37))
    np.testing.assert_allclose(
        score_statistics.interquartile_mean(values),
        scipy.stats.trim_mean(values, 0.25, axis=-1),
    )


def test_aggregates_of_a_batch_equal_aggregates_of_each_sample():
    rng = np.random.default_rng(1)
    batch = [rng.normal(size=(5, runs)) for runs in (3, 4, 2)]  # Unequal runs per game.
    for name, aggregate in score_statistics.AGGREGATES.items():
        one_by_one = [aggregate([game[b] for game in batch]) for b in range(5)]
        np.testing.assert_allclose(aggregate(batch), one_by_one, err_msg=name)


def test_stratified_resample_draws_runs_within_their_own_game():
    scores = [np.array([1.0, 2.0]), np.array([10.0, 20.0, 30.0])]
    first, second = score_statistics.stratified_resample(scores, 500, np.random.default_rng(0))
    assert first.shape == (500, 2) and second.shape == (500, 3)
    assert set(np.unique(first)) == {1.0, 2.0}
    assert set(np.unique(second)) == {10.0, 20.0, 30.0}


# Ten games whose means are symmetric about CENTER: the median, the mean of game means and the
# IQM of the pooled population are all CENTER. Ten runs per game, scores ~ Normal(mean, 0.5).
CENTER = 1.0
GAME_MEANS = CENTER + np.linspace(-1.0, 1.0, 10)


@pytest.mark.parametrize("name", sorted(score_statistics.AGGREGATES))
def test_stratified_bootstrap_interval_covers_the_true_value_at_about_the_nominal_rate(name):
    aggregate = score_statistics.AGGREGATES[name]
    rng = np.random.default_rng(2021)
    repetitions = 400
    covered = 0
    for _ in range(repetitions):
        scores = [rng.normal(mean, 0.5, size=10) for mean in GAME_MEANS]
        low, high = score_statistics.stratified_bootstrap_interval(
            aggregate, scores, num_samples=500, confidence=0.95, rng=rng
        )
        covered += low <= CENTER <= high
    # Around the nominal 0.95, with room for the binomial noise of 400 repetitions and for a
    # true coverage a little off nominal (10 runs a game), yet failing an interval that always
    # covers (runs resampled across games instead of within each) or never does (no
    # resampling). Measured coverages: docs/results.md.
    assert 0.88 <= covered / repetitions <= 0.99


def test_bootstrap_band_of_a_learning_curve_covers_the_true_mean():
    rng = np.random.default_rng(0)
    true_means = np.array([0.0, 5.0, 10.0])
    repetitions = 1000
    covered = np.zeros(3)
    # A percentile bootstrap of the mean of n runs covers about P(|t_(n-1)| < 1.96 sqrt(1 - 1/n)),
    # a little under the nominal 0.95 for 20 runs: the band is centred there, with room for the
    # binomial noise of 1000 repetitions. Measured coverages: docs/results.md.
    for _ in range(repetitions):
        values = rng.normal(true_means, 2.0, size=(20, 3))  # [runs, points]
        low, high = score_statistics.bootstrap_mean_interval(values, 500, 0.95, rng)
        covered += (low <= true_means) & (true_means <= high)
    rate = covered / repetitions
    assert np.all((rate >= 0.89) & (rate <= 0.97)), rate


def test_mean_and_std_uses_bessel_correction_and_has_no_std_for_one_value():
    assert score_statistics.mean_and_std(np.array([1.0, 2.0, 3.0])) == (2.0, 1.0)
    mean, std = score_statistics.mean_and_std(np.array([4.0]))
    assert mean == 4.0 and math.isnan(std)


# --------------------------------------------------------------------------------------
# Run records
# --------------------------------------------------------------------------------------


def _record(seed: int = 1, num_iterations: int = 5, agent: str = "dqn", game: str = "Pong"):
    return run_record.RunRecord(agent, game, seed, 4, num_iterations)


def test_run_record_round_trip_and_a_resume_may_change_the_iterations(tmp_path):
    csv_path = tmp_path / "results.csv"
    run_record.claim(csv_path, _record())
    assert (tmp_path / "results.run.json").is_file()
    assert run_record.read(csv_path) == _record()
    run_record.claim(csv_path, _record(num_iterations=8))
    assert run_record.read(csv_path).num_iterations == 8


def test_run_record_refuses_a_csv_of_another_run_and_keeps_it(tmp_path):
    csv_path = tmp_path / "results.csv"
    run_record.claim(csv_path, _record(seed=1))
    before = (tmp_path / "results.run.json").read_bytes()
    with pytest.raises(run_record.RunRecordError, match=r"seed 1.*seed 2.*--results_csv_path"):
        run_record.claim(csv_path, _record(seed=2))
    assert (tmp_path / "results.run.json").read_bytes() == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{not json", "malformed"), ('{"agent": "dqn", "format_version": 1}', "environment_name")],
)
def test_malformed_run_record_is_a_one_line_error(tmp_path, text, expected):
    csv_path = tmp_path / "results.csv"
    (tmp_path / "results.run.json").write_text(text)
    with pytest.raises(run_record.RunRecordError, match=expected) as error:
        run_record.read(csv_path)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------------------
# Synthetic runs: 2 agents x 2 games x 3 seeds
# --------------------------------------------------------------------------------------

AGENTS = ("dqn", "r2d2")
GAMES = ("Breakout", "Pong")
SEEDS = (1, 2, 3)
NUM_ITERATIONS = 5
STEPS_PER_ITERATION = 1000


def synthetic_return(agent: str, game: str, seed: int, iteration: int) -> float:
    """Evaluation return of a synthetic run: rises with iterations, offset by the seed."""
    slope = {"dqn": 1.0, "r2d2": 3.0}[agent] * (2.0 if game == "Pong" else 1.0)
    start = -21.0 if game == "Pong" else 1.0
    return start + slope * iteration + seed


def completed_iterations(agent: str, game: str, seed: int) -> int:
    # r2d2 on Breakout with seed 3 is still running: 3 of 5 iterations done.
    return 3 if (agent, game, seed) == ("r2d2", "Breakout", 3) else NUM_ITERATIONS


def write_run(root: pathlib.Path, agent: str, game: str, seed: int, iterations: int) -> None:
    """A run as the training scripts leave it: CSV rows from MetricsWriter, record beside."""
    csv_path = root / agent / game / f"seed_{seed}" / "results.csv"
    run_record.claim(csv_path, run_record.RunRecord(agent, game, seed, 4, NUM_ITERATIONS))
    writer = MetricsWriter(csv_path, None, frames_per_step=4)
    for iteration in range(1, iterations + 1):
        value = synthetic_return(agent, game, seed, iteration)
        if (agent, game, seed, iteration) == ("dqn", "Pong", 1, 1):
            value = math.nan  # No evaluation game finished in that iteration.
        writer.write(
            iteration,
            iteration * STEPS_PER_ITERATION,
            {"eval/episode_return": value, "train/episode_return": 0.0},
        )
    writer.close()


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("runs")
    for agent in AGENTS:
        for game in GAMES:
            for seed in SEEDS:
                write_run(root, agent, game, seed, completed_iterations(agent, game, seed))
    return root


def final_scores(agent: str, game: str) -> list[float]:
    return [
        synthetic_return(agent, game, seed, completed_iterations(agent, game, seed))
        for seed in SEEDS
    ]


def test_learning_curve_averages_seeds_by_iteration_and_keeps_unfinished_runs(synthetic_runs):
    runs = report.group_runs(report.load_runs([synthetic_runs], synthetic_runs / "out"))
    rng = np.random.default_rng(0)

    curve = report.learning_curve(runs[("r2d2", "Breakout")], 200, 0.95, rng)
    np.testing.assert_array_equal(curve.num_seeds, [3, 3, 3, 2, 2])
    np.testing.assert_array_equal(curve.frames, 4000.0 * np.arange(1, 6))
    expected = [
        np.mean([synthetic_return("r2d2", "Breakout", s, i) for s in SEEDS if i <= 3 or s < 3])
        for i in range(1, 6)
    ]
    np.testing.assert_allclose(curve.mean, expected)
    assert np.all((curve.low <= curve.mean) & (curve.mean <= curve.high))
    assert np.all(curve.high > curve.low)  # Seeds differ, so the band has a width.

    # An iteration without a finished evaluation game is left out of that seed's mean.
    curve = report.learning_curve(runs[("dqn", "Pong")], 200, 0.95, rng)
    np.testing.assert_array_equal(curve.num_seeds, [2, 3, 3, 3, 3])
    assert curve.mean[0] == pytest.approx(np.mean([-21.0 + 2.0 + s for s in (2, 3)]))


def _run_report(args: list, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "report", *[str(a) for a in args]],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _colour_pixels(image_bgr: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Pixels within a small distance of an RGB colour (line centres, not antialiased edges)."""
    target = np.array(rgb[::-1], dtype=np.int32)
    return int((np.abs(image_bgr.astype(np.int32) - target).max(axis=-1) <= 12).sum())


BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1: dqn and r2d2.


@pytest.fixture(scope="module")
def report_dir(synthetic_runs, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("report") / "out"
    result = _run_report([synthetic_runs, f"--out={out}", "--bootstrap_samples=500"])
    assert result.returncode == 0, result.stderr
    # One note: the unfinished run.
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "r2d2 on Breakout with seed 3" in notes[0], result.stderr
    return out


def test_report_writes_learning_curve_pngs_with_both_agents_drawn(report_dir):
    combined = cv2.imread(str(report_dir / "learning_curves.png"))
    # Two games side by side, 4.5 x 3.2 inches each at 100 dpi.
    assert combined.shape == (320, 900, 3)
    for game in GAMES:
        image = cv2.imread(str(report_dir / f"learning_curve_{game}.png"))
        assert image.shape == (480, 640, 3)
        assert (image < 250).any(axis=-1).mean() > 0.02  # Not blank: axes, text, curves.
        # A line in each agent's colour, not only axes and text.
        assert _colour_pixels(image, BLUE) > 50, game
        assert _colour_pixels(image, ORANGE) > 50, game
    assert _colour_pixels(combined, BLUE) > 50 and _colour_pixels(combined, ORANGE) > 50


def test_report_score_table_rows_against_hand_computed_values(report_dir):
    rows = _read_csv(report_dir / "scores.csv")
    assert [(r["agent"], r["game"]) for r in rows] == [(a, g) for a in AGENTS for g in GAMES]
    for row in rows:
        scores = final_scores(row["agent"], row["game"])
        random, human = atari_scores.RANDOM_AND_HUMAN_SCORES[row["game"]]
        assert row["num_seeds"] == "3"
        assert float(row["score_mean"]) == pytest.approx(np.mean(scores), rel=1e-5)
        assert float(row["score_std"]) == pytest.approx(np.std(scores, ddof=1), rel=1e-5)
        hns = (np.mean(scores) - random) / (human - random)
        assert float(row["hns_mean"]) == pytest.approx(hns, rel=1e-5)
    unfinished = {(r["agent"], r["game"]): r["num_unfinished"] for r in rows}
    assert unfinished[("r2d2", "Breakout")] == "1" and unfinished[("dqn", "Pong")] == "0"
    # dqn on Pong: seeds end at -21 + 10 + seed = -10, -9, -8; r2d2 on Breakout's unfinished
    # seed 3 counts with its latest evaluation, 1 + 9 + 3 = 13.
    assert final_scores("dqn", "Pong") == [-10.0, -9.0, -8.0]
    assert final_scores("r2d2", "Breakout")[2] == 13.0

    aggregates = _read_csv(report_dir / "aggregates.csv")
    assert [r["agent"] for r in aggregates] == list(AGENTS)
    for row in aggregates:
        per_game = {
            game: (np.array(final_scores(row["agent"], game)) - random) / (human - random)
            for game in GAMES
            for random, human in [atari_scores.RANDOM_AND_HUMAN_SCORES[game]]
        }
        game_means = sorted(v.mean() for v in per_game.values())
        pooled = sorted(np.concatenate(list(per_game.values())))
        expected = {
            "median": (game_means[0] + game_means[1]) / 2,  # Two games.
            "mean": np.mean(game_means),
            "iqm": np.mean(pooled[1:5]),  # Six runs: one cut at each end.
        }
        assert row["num_games"] == "2"
        for name, value in expected.items():
            assert float(row[f"{name}_hns"]) == pytest.approx(value, rel=1e-5), name
            assert float(row[f"{name}_hns_low"]) <= value <= float(row[f"{name}_hns_high"])

    markdown = (report_dir / "scores.md").read_text()
    for agent in AGENTS:
        for game in GAMES:
            assert f"| {agent} | {game} | 3 |" in markdown
    assert "| dqn | Pong | 3 | 20k | -9.0 ± 1.0 | 0.331 ± 0.028 |" in markdown
    assert "unfinished, iteration 3 of 5" in markdown


def test_report_without_any_csv_is_a_one_line_error(tmp_path):
    (tmp_path / "runs").mkdir()
    out = tmp_path / "out"
    line = one_error_line(_run_report([tmp_path / "runs", f"--out={out}"]))
    assert "no CSV found" in line and str(tmp_path / "runs") in line
    assert not out.exists()


@pytest.mark.parametrize("case", ["no_record", "other_columns"])
def test_report_on_a_csv_of_another_format_is_a_one_line_error(tmp_path, case):
    runs = tmp_path / "runs"
    write_run(runs, "dqn", "Pong", 1, 2)
    other = runs / "notes.csv"
    other.write_text("name,value\na,1\n")
    if case == "other_columns":
        run_record.claim(other, _record(seed=9))
    expected = "no run record" if case == "no_record" else "not a results CSV"
    with pytest.raises(report.UserError, match=expected) as error:
        report.load_runs([runs], tmp_path / "out")
    assert str(other) in str(error.value) and "\n" not in str(error.value)


def test_report_on_two_csvs_of_the_same_run_is_a_one_line_error(tmp_path):
    write_run(tmp_path / "a", "dqn", "Pong", 1, 2)
    write_run(tmp_path / "b", "dqn", "Pong", 1, 2)  # A copy of the run elsewhere.
    with pytest.raises(report.ReportError, match="are both dqn on Pong with seed 1"):
        report.load_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def write_labelled_run(root: pathlib.Path, agent: str, label: str, seed: int) -> None:
    """A run trained with --run_label: its directory and record carry the label."""
    csv_path = root / f"{agent}-{label}" / "Pong" / f"seed_{seed}" / "results.csv"
    run_record.claim(csv_path, run_record.RunRecord(agent, "Pong", seed, 4, 2, label=label))
    writer = MetricsWriter(csv_path, None, frames_per_step=4)
    writer.write(1, STEPS_PER_ITERATION, {"eval/episode_return": 1.0})
    writer.close()


def test_two_labelled_configurations_of_one_agent_are_reported_side_by_side(tmp_path):
    write_run(tmp_path, "r2d2", "Pong", 3, 2)
    write_labelled_run(tmp_path, "r2d2", "nstep3", seed=3)  # Same agent, game and seed.
    groups = report.group_runs(report.load_runs([tmp_path], tmp_path / "out"))
    assert sorted(groups) == [("r2d2", "Pong"), ("r2d2-nstep3", "Pong")]
    assert [run.record.label for run in groups[("r2d2-nstep3", "Pong")]] == ["nstep3"]


def test_a_run_record_without_a_label_reads_as_unlabelled(tmp_path):
    csv_path = tmp_path / "results.csv"
    run_record.claim(csv_path, run_record.RunRecord("dqn", "Pong", 1, 4, 2))
    path = run_record.record_path(csv_path)
    fields = json.loads(path.read_text())
    del fields["label"]  # As records written before labels existed.
    path.write_text(json.dumps(fields))
    assert run_record.read(csv_path).variant == "dqn"


def test_report_on_a_game_without_published_scores_leaves_its_hns_empty_with_a_note(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "dqn", "Pong", 1, NUM_ITERATIONS)
    write_run(runs, "dqn", "Tetris", 1, NUM_ITERATIONS)
    out = tmp_path / "out"
    built = report.build_report(report.load_runs([runs], out), 100, 0.95, np.random.default_rng(0))
    assert len(built.notes) == 1 and built.notes[0].startswith("Tetris: no published")
    report.write_report(built, out, 0.95, 100)
    rows = {r["game"]: r for r in _read_csv(out / "scores.csv")}
    assert rows["Tetris"]["hns_mean"] == "" and rows["Tetris"]["score_mean"] != ""
    assert rows["Pong"]["hns_mean"] != ""
    (aggregate,) = _read_csv(out / "aggregates.csv")
    assert aggregate["num_games"] == "1"  # Tetris is not in the aggregates.
    assert "Tetris: no published" in (out / "scores.md").read_text()


def test_a_game_id_with_a_slash_gets_one_file_in_the_output_folder(tmp_path):
    write_run(tmp_path / "runs", "dqn", "MinAtar/Breakout-v1", 0, 2)
    out = tmp_path / "out"
    result = _run_report([tmp_path / "runs", f"--out={out}", "--bootstrap_samples=100"])
    assert result.returncode == 0, result.stderr
    assert (out / "learning_curve_MinAtar_Breakout-v1.png").is_file()
    assert not (out / "learning_curve_MinAtar").exists()
