"""Checkpoints of a training run: weights, optimiser states and where training stands.

``model_dir`` holds ``ckpt-N.*`` files (TensorFlow's checkpoint format, written by a
``tf.train.CheckpointManager``: the ``checkpoint`` index file names the newest only
once its files are complete, so a run killed while saving resumes from the one
before), ``model.json`` (the model's ``get_config``, to rebuild it without the
flags) and ``flags.cfg`` (the resolved flags, usable as a ``--flagfile``).

Variables are keyed by their position in each network and optimiser, which is fixed
by the architecture; Keras's own variable names carry process-wide counters.
"""

import dataclasses
import glob
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from absl import logging

from tfmri import fileio
from tfmri.errors import UserError

MODEL_CONFIG = "model.json"
KERAS_KEYS = {"name", "trainable", "dtype"}  # what Keras's Model.get_config adds to ours
FLAGS_FILE = "flags.cfg"


class TrainingState(tf.Module):
    """Where training stands: completed epochs, steps into the current epoch, total steps."""

    def __init__(self):
        super().__init__(name="training_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    def describe(self):
        return (
            f"epoch {int(self.epoch) + 1}, step {int(self.step_in_epoch)} of it "
            f"({int(self.global_step)} steps in all)"
        )


def _by_position(variables):
    return {f"v{index:04d}": variable.value for index, variable in enumerate(variables)}


def trackables(model, state=None) -> dict:
    """What a checkpoint of ``model`` (a ReconstructionModel) holds, as tf.train.Checkpoint kwargs."""
    objects = {"generator": _by_position(model.generator.variables)}
    if model.discriminator is not None:
        objects["discriminator"] = _by_position(model.discriminator.variables)
    for name in ("g_optimizer", "d_optimizer"):
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            objects[name] = _by_position(optimizer.variables)
    if state is not None:
        objects["state"] = state
    return objects


class Checkpointer:
    """Saves and restores a run in ``model_dir``; refuses to save non-finite weights."""

    def __init__(self, model_dir, model, state, max_to_keep=3, save_dir=None):
        """``save_dir``: where this process saves, if not ``model_dir`` (a multi-worker
        run's non-chief workers save to their own temporary directory, keeping only the
        newest, and restore from the chief's ``model_dir``)."""
        self.model = model
        self.state = state
        self.checkpoint = tf.train.Checkpoint(**trackables(model, state))
        self.manager = tf.train.CheckpointManager(self.checkpoint, model_dir, max_to_keep)
        self.saver = self.manager
        self.save_dir = model_dir
        if save_dir is not None and os.path.abspath(save_dir) != os.path.abspath(model_dir):
            self.saver = tf.train.CheckpointManager(self.checkpoint, save_dir, max_to_keep=1)
            self.save_dir = save_dir
        remove_unfinished_saves(self.save_dir)

    def restore(self) -> bool:
        """Restores the newest checkpoint, if any; returns whether it did."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return False
        status = None
        try:
            status = self.checkpoint.restore(latest)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            if status is not None:
                # Else TensorFlow warns about the unrestored values at exit, after the
                # error line.
                status.expect_partial()
            raise UserError(
                f"{latest}: cannot restore it into this model ({str(error).splitlines()[0]}); "
                "use the flags it was trained with (flags.cfg next to it) or a new --model_dir"
            ) from None
        logging.info("restored %s: %s", latest, self.state.describe())
        return True

    def save(self) -> str:
        networks = [self.model.generator] + [self.model.discriminator] * (
            self.model.discriminator is not None
        )
        variables = [v for network in networks for v in network.variables]
        bad = [v.path for v in variables if not np.all(np.isfinite(v.numpy()))]
        if bad:
            raise NonFiniteWeights(
                f"weights became NaN or infinite ({bad[0]}, ...): not saved; the last good "
                f"checkpoint, {self.manager.latest_checkpoint}, is kept"
            )
        try:
            path = self.saver.save(checkpoint_number=int(self.state.global_step))
        finally:
            remove_unfinished_saves(self.save_dir)  # what a failed save left
        logging.info("saved %s (%s)", path, self.state.describe())
        return path


def remove_unfinished_saves(directory):
    """Removes the ``ckpt-N_temp`` folders that TensorFlow's writer leaves when a save
    fails (a full disk, a killed run): no checkpoint lists them, and the run holding
    ``directory`` writes no other checkpoint while it calls this."""
    for leftover in glob.glob(os.path.join(glob.escape(directory), "ckpt-*_temp")):
        if os.path.isdir(leftover) and not os.path.islink(leftover):
            logging.info("removing %s: an unfinished save", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


class NonFiniteWeights(UserError):
    """Training diverged; the message names the last good checkpoint."""


def restore_weights(model, checkpoint_path):
    """Loads the network weights (no optimiser state) of a checkpoint into ``model``."""
    if os.path.isdir(checkpoint_path):
        latest = tf.train.latest_checkpoint(checkpoint_path)
        if latest is None:
            raise UserError(f"{checkpoint_path}: no checkpoint in the directory; train first")
        checkpoint_path = latest
    objects = trackables(model)
    objects.pop("g_optimizer", None)
    objects.pop("d_optimizer", None)
    try:
        status = tf.train.Checkpoint(**objects).restore(checkpoint_path)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise UserError(
            f"{checkpoint_path}: not a checkpoint of this model ({str(error).splitlines()[0]})"
        ) from None
    return checkpoint_path


def load_model(model_dir, checkpoint_path=None):
    """(ReconstructionModel rebuilt from ``model_dir``'s model.json with the weights of the checkpoint,
    the checkpoint path); by default the newest checkpoint in ``model_dir``."""
    from tfmri.models import pix2pix

    record = read_model_config(model_dir)
    try:
        config = pix2pix.ModelConfig(**record["config"])
    except (TypeError, ValueError) as error:  # a value the fields do not take
        raise UserError(
            f"{os.path.join(model_dir, MODEL_CONFIG)}: {error}; restore it from the run, or "
            "train into a new --model_dir"
        ) from None
    model = pix2pix.ReconstructionModel.from_config({**record, "config": config})
    return model, restore_weights(model, checkpoint_path or model_dir)


def write_model_config(model_dir, model):
    fileio.write_json(os.path.join(model_dir, MODEL_CONFIG), model.get_config())


def read_model_config(model_dir) -> dict:
    """The ``model.json`` of ``model_dir``: ``{"config": {ModelConfig field: value}, ...}``
    (Keras's own keys beside it). UserError naming the file if it is missing, not JSON,
    or names a field that ModelConfig lacks."""
    from tfmri.models import pix2pix

    path = os.path.join(model_dir, MODEL_CONFIG)
    if not os.path.exists(path):
        raise UserError(f"{path}: missing; is {model_dir} the --model_dir of a training run?")
    fix = "restore it from the run, or train into a new --model_dir"
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except ValueError as error:  # truncated, not JSON, not UTF-8
        raise UserError(f"{path}: not a model record ({error}); {fix}") from None
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict):
        raise UserError(f'{path}: no "config" object of the model\'s fields; {fix}')
    known = {field.name for field in dataclasses.fields(pix2pix.ModelConfig)}
    unknown = sorted(set(config) - known) + sorted(set(record) - KERAS_KEYS - {"config"})
    if unknown:
        raise UserError(
            f"{path}: unknown model field {', '.join(map(repr, unknown))}; written by "
            f"another version of tfmri? {fix}"
        )
    return record
