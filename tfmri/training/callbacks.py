"""The Keras callbacks of a training run, one job each.

``tfmri.train`` passes them to ``fit`` in this order: :class:`StepCounter` (where
training stands, for checkpoints), :class:`DivergenceGuard` (stops on a non-finite
loss), :class:`PeriodicCheckpoint`, :class:`TensorBoardLogger` and
:class:`EpochProgress` (the one progress view of an epoch). The later ones skip a
step on which the guard stopped the run.
"""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfmri import progress


class StepCounter(keras.callbacks.Callback):
    """Counts the steps done into ``state`` (a checkpoints.TrainingState)."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_train_batch_end(self, batch, logs=None):
        self.state.global_step.assign_add(1)
        self.state.step_in_epoch.assign_add(1)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite log value; ``diverged`` then holds
    ({name: value}, where training stood)."""

    def __init__(self, state):
        super().__init__()
        self.state = state
        self.diverged = None

    def on_train_batch_end(self, batch, logs=None):
        values = {name: float(value) for name, value in (logs or {}).items()}
        bad = {name: value for name, value in values.items() if not math.isfinite(value)}
        if bad:
            self.diverged = (bad, self.state.describe())
            self.model.stop_training = True


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every ``every`` steps (0: never; the epoch loop saves at the
    end of each epoch)."""

    def __init__(self, checkpointer, state, every, guard):
        super().__init__()
        self.checkpointer = checkpointer
        self.state = state
        self.every = every
        self.guard = guard

    def on_train_batch_end(self, batch, logs=None):
        if self.guard.diverged or not self.every:
            return
        if int(self.state.global_step) % self.every == 0:
            self.checkpointer.save()


class TensorBoardLogger(keras.callbacks.Callback):
    """Step scalars every ``every`` steps; each epoch the training and validation
    metrics, the learning rates and a comparison image of fixed validation slices.

    ``log_dir`` None writes nothing (a multi-worker run's non-chief workers).
    ``images``: [(inputs, target)] of the fixed slices, and ``comparison(model,
    inputs)`` the uint8 image of one.
    """

    def __init__(self, log_dir, state, every, guard, images=None, comparison=None):
        super().__init__()
        if log_dir is None:
            self.train_writer = self.val_writer = tf.summary.create_noop_writer()
            images = None
        else:
            self.train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
            self.val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "val"))
        self.state = state
        self.every = every
        self.guard = guard
        self.images = images
        self.comparison = comparison

    def _learning_rates(self):
        rates = {"learning_rate/G": self.model.g_optimizer.learning_rate}
        if self.model.d_optimizer is not None:
            rates["learning_rate/D"] = self.model.d_optimizer.learning_rate
        return {name: float(value) for name, value in rates.items()}

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.state.global_step)
        if self.guard.diverged or not self.every or step % self.every:
            return
        values = {name: float(value) for name, value in (logs or {}).items()}
        with self.train_writer.as_default(step=step):
            for name, value in {**values, **self._learning_rates()}.items():
                tf.summary.scalar(f"step/{name}", value)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged:
            return
        logs = logs or {}
        epoch_number = epoch + 1
        with self.train_writer.as_default(step=epoch_number):
            for name, value in logs.items():
                if not name.startswith("val_"):
                    tf.summary.scalar(f"epoch/{name}", float(value))
            for name, value in self._learning_rates().items():
                tf.summary.scalar(f"epoch/{name}", value)
        with self.val_writer.as_default(step=epoch_number):
            for name, value in logs.items():
                if name.startswith("val_"):
                    tf.summary.scalar(f"epoch/{name[4:]}", float(value))
            if self.images is not None:
                grid = np.concatenate([self.comparison(self.model, i) for i, _ in self.images])
                tf.summary.image(
                    "zero-filled | reconstruction | target | 5 x error", grid[None, ..., None]
                )
        self.train_writer.flush()
        self.val_writer.flush()


def _format(logs):
    return ", ".join(f"{name} {float(value):.4g}" for name, value in sorted(logs.items()))


class EpochProgress(keras.callbacks.Callback):
    """The one progress view of an epoch (:class:`tfmri.progress.ProgressBar`: a tqdm bar
    on a terminal or in a notebook, in a log a line every ``log_seconds`` with the
    generator losses), then one line with the epoch's metrics."""

    def __init__(self, epoch, total_epochs, steps, done=0, log_seconds=30.0):
        super().__init__()
        self.label = f"epoch {epoch + 1}/{total_epochs}"
        self.steps, self.done = steps, done
        self.log_seconds = log_seconds
        self.bar = None

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()
        self.bar = progress.ProgressBar(
            self.steps,
            "steps",
            log_seconds=self.log_seconds,
            desc=self.label,
            initial=self.done,
            leave=False,
        )

    def on_train_batch_end(self, batch, logs=None):
        losses = {name: value for name, value in (logs or {}).items() if name.startswith("G_")}
        self.bar.update(extra=_format(losses))

    def on_epoch_end(self, epoch, logs=None):
        self._close()
        seconds = time.monotonic() - self.started
        print(f"{self.label}: {seconds:.1f} s; {_format(logs or {})}", flush=True)

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
