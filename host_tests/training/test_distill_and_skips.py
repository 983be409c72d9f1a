"""Distillation keeps the teacher frozen; skip gates follow their schedule in one run and export exactly."""

from __future__ import annotations

import numpy as np
import pytest

from training.distill import StudentTrainer, kd_loss
from training.keras_compat import keras, tf
from training.models import create_model, export_clean, get_skip_modes, set_skip_modes
from training.quant import QuantSpec
from training.skips import SkipSchedule, modes_at_epoch


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


@pytest.mark.parametrize("loss_kind", ["hinton", "tailor"])
def test_teacher_stays_bit_identical_while_student_learns(loss_kind):
    teacher, student = create_model("resnet8"), create_model("resnet8", quant="<8,3>")
    before_t = [w.copy() for w in teacher.get_weights()]
    before_s = [w.copy() for w in student.get_weights()]
    trainer = StudentTrainer(student, teacher, loss_kind)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    x, y = _data()
    trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before_t, teacher.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(before_s, student.get_weights()))


def test_hinton_loss_by_hand():
    s = tf.constant([[2.0, 0.0, -1.0]])
    t = tf.constant([[1.0, 1.0, 0.0]])
    y = tf.constant([0])
    T, a = 2.0, 0.7
    pt = np.exp(t.numpy() / T) / np.exp(t.numpy() / T).sum()
    ps = np.exp(s.numpy() / T) / np.exp(s.numpy() / T).sum()
    kl = (pt * np.log(pt / ps)).sum()
    ce = -np.log(np.exp(2.0) / np.exp(s.numpy()).sum())
    assert float(kd_loss("hinton", y, s, t, T, a)) == pytest.approx(a * T * T * kl + (1 - a) * ce, rel=1e-5)
    mse = ((t.numpy() - s.numpy()) ** 2).mean()
    assert float(kd_loss("tailor", y, s, t)) == pytest.approx(0.35 * mse + 0.65 * ce, rel=1e-5)


def test_label_smoothing_by_hand():
    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = tf.constant([0, 2])
    eps = 0.2
    target = np.full((2, 3), eps / 3) + (1 - eps) * np.eye(3)[[0, 2]]
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    expected = float(np.mean(-(target * log_p).sum(1)))
    assert float(kd_loss("ce", labels, logits, label_smoothing=eps)) == pytest.approx(expected, rel=1e-5)
    assert float(kd_loss("ce", labels, logits)) < float(kd_loss("ce", labels, logits, label_smoothing=eps))


def test_teacher_with_another_output_shape_is_refused():
    student = create_model("resnet8")
    inp = keras.Input((32, 32, 3))
    teacher = keras.Model(inp, keras.layers.Dense(100)(keras.layers.Flatten()(inp)))
    with pytest.raises(ValueError, match="teacher output"):
        StudentTrainer(student, teacher, "hinton")


def test_schedule_changes_one_block_every_k_epochs_from_the_input_end():
    assert modes_at_epoch(3, 0, 2, "none") == ("long", "long", "long")
    assert modes_at_epoch(3, 2, 2, "none") == ("none", "long", "long")
    assert modes_at_epoch(3, 5, 2, "short") == ("short", "short", "long")
    assert modes_at_epoch(3, 6, 2, "short") == ("short", "short", "short")
    assert modes_at_epoch(3, 50, 2, "none") == ("none",) * 3


def test_gated_folded_model_exports_a_clean_folded_model_with_equal_outputs():
    gated = create_model("resnet8", quant="<8,3>", gated=True, fold_bn=True)
    set_skip_modes(gated, ["none", "long", "short"])
    clean = export_clean(gated, QuantSpec.parse("<8,3>"))
    assert sum(type(layer).__name__ == "QConv2DBatchnorm" for layer in clean.layers) == 9
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(gated(x).numpy(), clean(x).numpy())


@pytest.mark.parametrize("quant", [None, "<8,3>"], ids=["float", "q8_3"])
@pytest.mark.parametrize("target", ["none", "short"])
def test_gated_model_exports_a_clean_model_with_equal_outputs(quant, target):
    gated = create_model("resnet20", quant=quant, gated=True)
    modes = (target,) * 4 + ("long",) * 5
    set_skip_modes(gated, modes)
    assert get_skip_modes(gated) == modes
    clean = export_clean(gated, QuantSpec.parse(quant) if quant else None)
    assert not [lyr for lyr in clean.layers if "gate" in lyr.name]
    x, _ = _data(8)
    np.testing.assert_array_equal(gated(x, training=False).numpy(), clean(x, training=False).numpy())


def test_skip_removal_inside_one_fit_keeps_the_optimizer_state():
    student = create_model("resnet8", gated=True)
    trainer = StudentTrainer(student)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    schedule = SkipSchedule(student, "skip_remover", every=1)
    x, y = _data(32)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(get_skip_modes(student)))
    trainer.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[schedule, record])
    assert seen == [("long",) * 3, ("none", "long", "long"), ("none", "none", "long"), ("none",) * 3]
    # One optimizer, never rebuilt: its step counter ran through all four epochs.
    assert int(trainer.optimizer.iterations.numpy()) == 4 * 2
