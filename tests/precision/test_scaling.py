"""Tests for keras_tricks.precision.scaling: the batch-size rule."""

import numpy as np
import pytest

from keras_tricks import precision


def test_linear_rule_scales_lr_and_suggests_goyal_warmup():
    new = precision.scale_hparams(
        0.1, 256, 1024, weight_decay=1e-4, momentum=0.9, steps_per_epoch=1251
    )
    assert new.factor == 4.0
    assert new.lr == pytest.approx(0.4)
    assert new.weight_decay == pytest.approx(1e-4)
    assert new.warmup_epochs == 5.0
    assert new.warmup_steps == 5 * 1251
    # Smith's lr*wd/(batch*(1-m)) is held by the linear rule.
    assert new.smith_ratio_before == pytest.approx(0.1 * 1e-4 / (256 * 0.1))
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before)
    text = str(new)
    for words in ("256 -> 1024", "Goyal", "0.1 -> 0.4", "(kept)", "held constant"):
        assert words in text
    assert "5 epochs = 6255 steps" in text


def test_keep_lr_moves_the_factor_to_weight_decay():
    new = precision.scale_hparams(3e-4, 32, 128, weight_decay=0.01, keep="lr")
    assert new.lr == pytest.approx(3e-4)
    assert new.weight_decay == pytest.approx(0.04)
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before)
    assert new.warmup_epochs == 0.0  # the LR did not grow
    assert "wd scales with the batch" in str(new)
    assert "none needed" in str(new)


def test_sqrt_rule():
    new = precision.scale_hparams(1e-3, 64, 1024, weight_decay=0.05, rule="sqrt")
    assert new.factor == pytest.approx(4.0)
    assert new.lr == pytest.approx(4e-3)
    # sqrt scaling does not hold Smith's ratio: it drops by sqrt(k) = 4.
    assert new.smith_ratio_after == pytest.approx(new.smith_ratio_before / 4)
    assert "square-root" in str(new) and "x0.25" in str(new)


def test_warmup_is_capped_at_ten_percent_of_a_short_run_and_zero_when_shrinking():
    assert precision.scale_hparams(0.1, 128, 512, epochs=20).warmup_epochs == 2.0
    assert precision.scale_hparams(0.1, 128, 512, epochs=200).warmup_epochs == 5.0
    tiny = precision.scale_hparams(0.1, 128, 512, epochs=2, steps_per_epoch=2)
    assert tiny.warmup_epochs == pytest.approx(0.2) and tiny.warmup_steps == 1
    smaller = precision.scale_hparams(0.4, 1024, 256)
    assert smaller.lr == pytest.approx(0.1)
    assert smaller.warmup_epochs == 0.0 and smaller.warmup_steps is None
    assert smaller.weight_decay is None and smaller.smith_ratio_before is None
    assert "weight decay" not in str(smaller)


def test_scale_hparams_validates():
    cases = [
        ({"lr": 0}, "Argument `lr` must be a finite number > 0. Received: lr=0"),
        ({"lr": float("nan")}, "Argument `lr` must be a finite number"),
        ({"lr": "0.1"}, "Received: lr='0.1'"),
        ({"batch_size": 0}, "Argument `batch_size` must be a positive integer"),
        ({"new_batch_size": 64.5}, "Received: new_batch_size=64.5"),
        ({"batch_size": True}, "Argument `batch_size`"),
        (
            {"weight_decay": -1e-4},
            "Argument `weight_decay` must be a finite number >= 0",
        ),
        ({"momentum": 1.0}, r"Argument `momentum` must be a number in \[0, 1\)"),
        ({"rule": "square"}, "Argument `rule` must be 'linear' or 'sqrt'"),
        ({"keep": "both"}, "Argument `keep` must be 'wd'"),
        ({"keep": "lr"}, "`weight_decay` must be > 0. Received: weight_decay=None"),
        ({"epochs": 0}, "Argument `epochs` must be a positive integer"),
        ({"steps_per_epoch": -3}, "Argument `steps_per_epoch`"),
    ]
    for kwargs, message in cases:
        arguments = {"lr": 0.1, "batch_size": 256, "new_batch_size": 512}
        arguments.update(kwargs)
        with pytest.raises(ValueError, match=message):
            precision.scale_hparams(**arguments)


def test_scale_hparams_takes_numpy_momentum_and_documents_both_rules():
    new = precision.scale_hparams(
        1e-3, 32, 512, weight_decay=0.01, momentum=np.float32(0.9), rule="sqrt"
    )
    assert new.lr == pytest.approx(1e-3 * np.sqrt(16))
    doc = precision.scale_hparams.__doc__
    for words in ("Malladi", "Hoffer", "adaptive optimizers", "LARS"):
        assert words in doc


def test_scale_hparams_without_weight_decay_prints():
    # weight_decay=0: Smith's ratio is 0 before and after (nothing to divide).
    new = precision.scale_hparams(0.1, 256, 1024, weight_decay=0.0, momentum=0.9)
    text = str(new)
    assert new.smith_ratio_before == 0.0 == new.smith_ratio_after
    assert "weight decay:  0 -> 0" in text and "0 -> 0 (held constant)" in text
