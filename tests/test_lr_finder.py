"""The learning-rate range test: its rules on synthetic curves, and `find_lr` on tiny runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ktransfer import config
from ktransfer.errors import ConfigError
from ktransfer.training import train
from ktransfer.training.lr_finder import ExponentialRange, find_lr, smooth, suggest

from conftest import run_cli, tiny_values, train_killed_after


def _synthetic_curve(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rates 1e-7..10; the loss is flat, falls between 1e-4 and 1e-2, then blows up above
    0.3 (with batch noise): the shape of a real range test."""
    lrs = np.geomspace(1e-7, 10, n)
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 3)))  # the fall is centred on 1e-3
    loss += np.where(lrs > 0.3, (x + 0.5) ** 2 * 8, 0.0)
    return lrs, loss + np.random.default_rng(seed).normal(0, 0.03, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_rules_suggest_a_rate_where_the_loss_falls(seed):
    lrs, losses = _synthetic_curve(seed=seed)
    suggestions = suggest(lrs, smooth(losses))
    assert set(suggestions) == {"valley", "steepest"}
    for name, lr in suggestions.items():
        assert 1e-4 <= lr <= 1e-2, (name, lr)  # inside the descent, not on the plateau
        # or in the divergence


def test_exponential_range_spans_start_to_end_on_a_log_scale():
    schedule = ExponentialRange(1e-6, 1.0, 7)
    rates = [float(schedule(i)) for i in range(7)]
    np.testing.assert_allclose(rates, np.geomspace(1e-6, 1.0, 7), rtol=1e-5)
    assert schedule.rate(3) == pytest.approx(1e-3)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # a run and a range test: make test-slow
def test_fine_tune_range_test_on_a_finished_run_changes_nothing_of_it(tmp_path):
    run = train(config.build(**tiny_values(tmp_path, epochs=2, fine_tune_epochs=1))).run_dir
    before = _digest(run)
    cfg = config.build_find_lr(**tiny_values(tmp_path, init_from=str(run), epochs=0,
                                             run_dir=""),
                               phase="fine_tune", num_steps=40, start_lr=1e-6, end_lr=10.0,
                               output_dir=str(tmp_path / "lr"))
    result = find_lr(cfg)
    assert _digest(run) == before  # the run's weights and files are untouched
    assert not (tmp_path / "run2").exists()
    assert result.flag == "fine_tune_lr" and 10 <= len(result.lrs) <= 40
    assert all(1e-6 <= lr <= 10.0 for lr in result.suggestions.values())
    written = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert written["flag"] == "--fine_tune_lr"
    assert written["suggested"] == pytest.approx(result.suggestions["valley"])
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000


@pytest.mark.slow  # a fresh Python that trains: make test-slow
def test_find_lr_cli_on_cached_features_suggests_a_head_rate(tmp_path):
    """The CLI end to end (one process): the head phase on cached features; the loss falls
    inside the range, so the suggestion lies strictly inside it."""
    result = run_cli("find_lr", "--data=builtin:digits", "--backbone=small_cnn",
                     "--weights=none", "--image_size=16", "--cache_features", "--verbose=0",
                     "--num_steps=60", f"--output_dir={tmp_path / 'lr'}")
    assert result.returncode == 0, result.stderr
    assert "suggested: --lr=" in result.stdout
    rows = (tmp_path / "lr" / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed" and 10 < len(rows) <= 61
    suggested = json.loads((tmp_path / "lr" / "lr_find.json").read_text())["suggested"]
    assert 1e-6 < suggested < 1.0


def test_bad_range_flags_are_named():
    with pytest.raises(ConfigError, match="^--start_lr: must be > 0 and below --end_lr"):
        config.build_find_lr(data="builtin:digits", start_lr=1.0, end_lr=0.1)
    with pytest.raises(ConfigError, match="^--num_steps: must be in 10..100000"):
        config.build_find_lr(data="builtin:digits", num_steps=3)


@pytest.mark.slow
def test_train_with_auto_rates_runs_the_range_tests_and_resumes_with_their_rates(
        tmp_path, monkeypatch):
    values = tiny_values(tmp_path, epochs=2, fine_tune_epochs=2, lr="auto",
                         fine_tune_lr="auto", cache_features=True)
    train_killed_after(3, config.build(**values), monkeypatch)  # in the fine-tuning phase
    run = tmp_path / "run"
    saved = config.parse_flagfile(run / "flags.cfg")
    for phase, flag in (("head", "lr"), ("fine_tune", "fine_tune_lr")):
        found = json.loads((run / "lr_find" / phase / "lr_find.json").read_text())
        assert saved[flag] == pytest.approx(found["suggested"]) and saved[flag] > 0
    # The same command resumes (auto matches the saved rates) and keeps them.
    result = train(config.build(**values))
    assert result.metrics["epochs"] == {"head": 2, "fine_tune": 2}
    assert config.parse_flagfile(run / "flags.cfg")["lr"] == saved["lr"]


def test_auto_rates_are_refused_for_multi_worker_runs(tmp_path):
    from ktransfer import preflight

    cfg = config.build(**tiny_values(tmp_path, fine_tune_epochs=1, fine_tune_lr="auto",
                                     strategy="multi_worker"))
    with pytest.raises(ConfigError, match="^--fine_tune_lr: auto is not for multi-worker"):
        preflight.check_train(cfg)
