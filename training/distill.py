"""Knowledge distillation: Hinton's soft targets and Tailor's logit matching, with a frozen teacher.

``StudentTrainer`` wraps the student (and optionally a teacher) in one Keras model whose ``train_step`` computes the
chosen loss and updates the student only. The teacher runs in inference mode (``training=False``: BatchNorm uses its
moving statistics and does not update them) and none of its variables is ever handed to the optimizer, so its
weights stay bit-identical through training (tested).

Losses on logits ``s`` (student), ``t`` (teacher) and labels ``y``:

* ``ce``: cross-entropy, no teacher (with label smoothing ``eps``: the target is ``(1 - eps) * y + eps / 10``);
* ``hinton``: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s)`` (Hinton et al. 2015; the
  ``T^2`` keeps the soft-target gradients on the scale of the hard-target ones);
* ``tailor``: ``0.35 * MSE(t, s) + 0.65 * CE(y, s)`` (Weng et al., Tailor, TRETS 2024).
"""

from __future__ import annotations

from training.keras_compat import keras, tf

KD_LOSSES = ("ce", "hinton", "tailor")


def kd_loss(kind: str, labels, student_logits, teacher_logits=None, temperature: float = 4.0, alpha: float = 0.9,
            label_smoothing: float = 0.0):  # fmt: skip
    """Mean loss over the batch for ``kind`` in :data:`KD_LOSSES`.

    ``label_smoothing`` softens the hard-label cross-entropy term (every kind has one).

    Raises:
        ValueError: unknown kind, or a distillation loss without teacher logits.
    """
    if label_smoothing:
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), tf.shape(student_logits)[-1])
        ce = tf.reduce_mean(keras.losses.categorical_crossentropy(one_hot, student_logits, from_logits=True,
                                                                  label_smoothing=label_smoothing))  # fmt: skip
    else:
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True))
    if kind == "ce":
        return ce
    if teacher_logits is None:
        raise ValueError(f"the {kind!r} loss needs teacher logits")
    if kind == "hinton":
        soft_t = tf.nn.softmax(teacher_logits / temperature)
        log_soft_s = tf.nn.log_softmax(student_logits / temperature)
        log_soft_t = tf.nn.log_softmax(teacher_logits / temperature)
        kl = tf.reduce_mean(tf.reduce_sum(soft_t * (log_soft_t - log_soft_s), axis=-1))
        return alpha * temperature**2 * kl + (1.0 - alpha) * ce
    if kind == "tailor":
        mse = tf.reduce_mean(tf.square(teacher_logits - student_logits))
        return 0.35 * mse + 0.65 * ce
    raise ValueError(f"unknown loss {kind!r}; use one of {KD_LOSSES}")


def check_teacher(teacher: keras.Model, student: keras.Model) -> None:
    """Refuse a teacher whose input or output shape differs from the student's.

    Raises:
        ValueError: with both shapes in the message.
    """
    if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
        raise ValueError(f"teacher input {teacher.input_shape[1:]} != student input {student.input_shape[1:]}")
    if tuple(teacher.output_shape[1:]) != tuple(student.output_shape[1:]):
        raise ValueError(f"teacher output {teacher.output_shape[1:]} != student output {student.output_shape[1:]}")


class StudentTrainer(keras.Model):
    """Trains ``student`` with :func:`kd_loss`; evaluation reports the student's cross-entropy and top-1.

    Args:
        student: the model being trained (its regularization losses are added).
        teacher: frozen teacher, or None for plain cross-entropy.
        loss_kind: one of :data:`KD_LOSSES` (``ce`` when there is no teacher).
        temperature: Hinton's T.
        alpha: Hinton's weight of the soft-target term.
        label_smoothing: of the hard-label cross-entropy in training (evaluation reports the plain one).
    """

    def __init__(self, student: keras.Model, teacher: keras.Model | None = None, loss_kind: str = "ce",
                 temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0):  # fmt: skip
        super().__init__(name="student_trainer")
        if loss_kind not in KD_LOSSES:
            raise ValueError(f"unknown loss {loss_kind!r}; use one of {KD_LOSSES}")
        if loss_kind != "ce" and teacher is None:
            raise ValueError(f"the {loss_kind!r} loss needs a teacher")
        if teacher is not None:
            check_teacher(teacher, student)
            teacher.trainable = False
        self.student, self.teacher = student, teacher
        self.loss_kind, self.temperature, self.alpha = loss_kind, temperature, alpha
        self.label_smoothing = label_smoothing
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.acc]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        x, y = data
        teacher_logits = self.teacher(x, training=False) if self.teacher is not None else None
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            loss = kd_loss(self.loss_kind, y, logits, teacher_logits, self.temperature, self.alpha,
                           self.label_smoothing)  # fmt: skip
            loss += tf.add_n(self.student.losses) if self.student.losses else 0.0
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        self.acc.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        logits = self.student(x, training=False)
        self.loss_tracker.update_state(kd_loss("ce", y, logits))
        self.acc.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}
