"""Trains pix2pix (or the L1 U-Net baseline) on converted fastMRI data.

  python -m tfmri.train --flagfile=configs/demo.cfg
  tensorboard --logdir=<model_dir>/logs

The flagfile is the whole recipe; the resolved flags are written to
``<model_dir>/flags.cfg``. Rerunning the same command resumes from the newest
checkpoint in ``--model_dir`` (epoch, step, weights, optimiser states, learning-rate
schedule; data order and masks are a function of the seed and epoch) instead of
starting over. A NaN or infinite loss stops the run with a non-zero exit and leaves
the last good checkpoint as it was.
"""

import datetime
import json
import math
import os
import socket
import sys
import time

from absl import flags, logging

from tfmri import cli

cli.quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.plugins.hparams import api as hparams_api  # noqa: E402

from tfmri import (  # noqa: E402
    callbacks,
    checkpoints,
    config,
    fileio,
    runlock,
    runtime,
    visualize,
    volumes,
)
from tfmri.data import pipeline  # noqa: E402
from tfmri.errors import UserError  # noqa: E402
from tfmri.models import pix2pix  # noqa: E402

FLAGS = flags.FLAGS
# What the model and the metrics need from the pipeline's inputs (no strings: they
# would have to be split over replicas for nothing); the optional ones are there for
# data consistency, and in validation data for scoring against the stored target.
MODEL_INPUTS = ("zero_filled", "mean", "std", "max_value")
OPTIONAL_INPUTS = ("measured", "mask", "zero_filled_image", "target_image")


class TrainingDiverged(UserError):
    """A loss became NaN or infinite."""


def _model_inputs(inputs, target):
    keys = MODEL_INPUTS + tuple(key for key in OPTIONAL_INPUTS if key in inputs)
    return {key: inputs[key] for key in keys}, target


# Flags that may differ when a run is resumed: how long it trains, where and how it
# runs, and what it logs. Every other flag of the recipe (model, data, masks, losses,
# optimiser, seed, precision, batch) must match the run's flags.cfg.
RESUMABLE_FLAGS = (
    "epochs",
    "epochs_decay",
    "strategy",
    "num_cpu_devices",
    "deterministic",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "log_every_steps",
    "num_images",
)
HISTORY_FILE = "history.jsonl"  # one line per start or resume of the run, appended


def _check_flags():
    config.check_directories()
    # The data must be there before any work: these raise naming the directory and split.
    manifest, train_entry, _ = pipeline.split_info(FLAGS.data_dir, FLAGS.train_split)
    val_entry = manifest.split(FLAGS.val_split)
    manifest.shard_paths(FLAGS.val_split)  # every shard there, whole
    if not train_entry.statistics.has_target:
        raise UserError(
            f"--train_split={FLAGS.train_split}: it has no targets (a test split); "
            "train on a split with reconstructions"
        )
    for split in (FLAGS.train_split, FLAGS.val_split):
        pipeline.check_crop(manifest, split, FLAGS.crop_size)
    config.check()
    shard_slices = list(train_entry.shard_slices)
    return sum(shard_slices), val_entry.num_slices, shard_slices


def _flagfile_values(text) -> dict:
    """{flag name: value as written} of a flagfile's ``--name=value`` / ``--[no]name`` lines."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        body = line[2:]
        if "=" in body:
            name, value = body.split("=", 1)
        elif body.startswith("no") and body[2:] in FLAGS and FLAGS[body[2:]].boolean:
            name, value = body[2:], "false"
        else:
            name, value = body, "true"
        values[name] = value
    return values


def recipe_changes(saved, current) -> dict:
    """{flag: (saved value, current value)} for every recipe flag that differs, of two
    :func:`_flagfile_values`.

    Flags in :data:`RESUMABLE_FLAGS` may differ; directories are compared by real path;
    a flag the saved file lacks (added to tfmri since the run started) is not compared.
    """
    changes = {}
    for name, value in current.items():
        if name in RESUMABLE_FLAGS:
            continue
        old = saved.get(name)
        if old is None:
            continue  # not recorded: the run predates the flag
        if name in ("data_dir", "model_dir") and os.path.realpath(old) == os.path.realpath(value):
            continue
        if old != value:
            changes[name] = (old, value)
    return changes


def _check_recipe(model_dir):
    """Refuses to resume ``model_dir`` with another recipe; returns the resumable flags
    that changed ({name: (old, new)}), for the run's history."""
    path = os.path.join(model_dir, checkpoints.FLAGS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        saved = _flagfile_values(handle.read())
    current = _flagfile_values(resolved_flags())
    changes = recipe_changes(saved, current)
    if changes:
        listed = ", ".join(f"--{name} {old} -> {new}" for name, (old, new) in changes.items())
        raise UserError(
            f"--model_dir={model_dir}: holds a run with another recipe ({listed}); resume "
            f"it with its own flags (--flagfile={path}, changing only "
            f"{', '.join('--' + name for name in RESUMABLE_FLAGS)}), or use a new --model_dir"
        )
    return {
        name: (saved.get(name), current[name])
        for name in RESUMABLE_FLAGS
        if name in current and saved.get(name) != current[name]
    }


def _append_history(model_dir, event):
    """Appends one JSON line to the run's history (never rewritten)."""
    event = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(sys.argv),
        **event,
    }
    with open(os.path.join(model_dir, HISTORY_FILE), "a") as handle:
        handle.write(json.dumps(event, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _no_auto_sharding():
    """Dataset options: a multi-worker strategy must not split the dataset itself
    (tfmri splits the training files per worker, and validation is not split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _own_dir(task):
    """Where this process of the run saves: --model_dir for the chief, else its own."""
    return FLAGS.model_dir if task.is_chief else worker_dir(FLAGS.model_dir, task.index)


def worker_dir(model_dir, index):
    """Where non-chief worker ``index`` of a multi-worker run saves its checkpoints."""
    return os.path.join(model_dir, "workers", str(index))


def resolved_flags() -> str:
    """The flags of this run as a flagfile (the shared flags: train and evaluate read it)."""
    lines = [flag.serialize() for flag in config.recipe_flags()]
    return "\n".join(line for line in lines if line) + "\n"


def comparison_image(model, inputs):
    """uint8 [S, 4 * S] comparison of the model's reconstruction of one validation slice
    with its zero-filled input and stored target (unclamped)."""
    inputs = {key: value[None] for key, value in inputs.items()}
    prediction = volumes.denormalized(model(inputs, training=False), inputs)
    return visualize.comparison_grid(
        np.asarray(inputs["zero_filled_image"]),
        np.asarray(prediction),
        np.asarray(inputs["target_image"]),
    )


def fixed_validation_slices(dataset, count):
    """The middle slice of each of the first ``count`` validation volumes: [(inputs, target)]."""
    if count == 0:
        return None
    chosen = []
    for inputs, target in dataset.unbatch():
        if int(inputs["slice_index"]) == int(inputs["num_slices"]) // 2:
            chosen.append(_model_inputs(inputs, target))
            if len(chosen) == count:
                break
    # One slice per entry: with data consistency their widths can differ.
    return chosen or None


def _write_hparams(log_dir, values):
    plain = {
        name: value if isinstance(value, (bool, int, float, str)) else str(value)
        for name, value in values.items()
        if value is not None
    }
    with tf.summary.create_file_writer(os.path.join(log_dir, "hparams")).as_default():
        hparams_api.hparams(plain)


def train():
    """Runs (or resumes) the training the flags describe; returns the final metrics.

    The run holds ``--model_dir`` (a multi-worker run's other workers their own
    directories) for its whole length: a second run into it stops at once.
    """
    checked = _check_flags()
    task = runtime.cluster_task() if FLAGS.strategy == "multi_worker" else runtime.Task()
    with runlock.hold(_own_dir(task), "training", "--model_dir"):
        changed = _check_recipe(FLAGS.model_dir) if task.is_chief else {}
        return _train(checked, task, changed)


def _train(checked, task, changed):
    train_slices, val_slices, train_shards = checked
    spec = config.mask_spec()
    model_config = config.model_config()
    if task.num_workers > len(train_shards):
        raise UserError(
            f"--data_dir={FLAGS.data_dir}: split {FLAGS.train_split} has {len(train_shards)} "
            f"shard(s) for {task.num_workers} workers, which share the training data by file; "
            f"convert again with --num_shards={task.num_workers} or more"
        )
    mine = sum(train_shards[task.index :: task.num_workers])
    if task.num_workers > 1 and mine < FLAGS.batch_size:
        raise UserError(
            f"--batch_size={FLAGS.batch_size}: worker {task.index}'s shards of "
            f"{FLAGS.train_split} hold {mine} slices, fewer than one global batch; use a "
            "smaller batch or fewer, larger shards"
        )
    strategy = runtime.configure(
        FLAGS.num_cpu_devices, FLAGS.strategy, FLAGS.precision, FLAGS.deterministic
    )
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise UserError(
            f"--batch_size={FLAGS.batch_size}: must be a multiple of the {replicas} replicas"
        )
    steps_per_epoch = train_slices // FLAGS.batch_size
    if steps_per_epoch == 0:
        raise UserError(
            f"--batch_size={FLAGS.batch_size}: larger than the {train_slices} training slices"
        )
    if FLAGS.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, FLAGS.max_steps_per_epoch)
    total_epochs = FLAGS.epochs + FLAGS.epochs_decay
    print(
        f"{replicas} replica(s), global batch {FLAGS.batch_size}, {steps_per_epoch} steps "
        f"per epoch, {total_epochs} epochs",
        flush=True,
    )

    keras.utils.set_random_seed(FLAGS.seed)
    with strategy.scope():
        model = pix2pix.Pix2Pix(model_config)
        schedule = pix2pix.LinearDecay(
            FLAGS.learning_rate,
            FLAGS.epochs * steps_per_epoch,
            FLAGS.epochs_decay * steps_per_epoch,
        )
        optimizers = [
            pix2pix.make_optimizer(schedule, FLAGS.beta1, FLAGS.beta2, FLAGS.precision, name)
            for name in ("adam_G", "adam_D")
        ]
        model.compile(*optimizers)

    # Multi-worker: every worker saves checkpoints (saving takes part in collectives),
    # but only the chief writes to --model_dir; the others save to a directory of their
    # own and write no logs, flags or model config. All restore from --model_dir.
    state = checkpoints.TrainingState()
    checkpointer = checkpoints.Checkpointer(
        FLAGS.model_dir, model, state, FLAGS.keep_checkpoints, save_dir=_own_dir(task)
    )
    resumed = checkpointer.restore()
    if resumed:
        print(f"resuming from {checkpointer.manager.latest_checkpoint}: {state.describe()}")
    log_dir = None
    if task.is_chief:
        _append_history(
            FLAGS.model_dir,
            {
                "event": "resume" if resumed else "start",
                "checkpoint": checkpointer.manager.latest_checkpoint if resumed else None,
                "global_step": int(state.global_step),
                "changed": {name: list(values) for name, values in changed.items()},
            },
        )
        fileio.write_text(os.path.join(FLAGS.model_dir, checkpoints.FLAGS_FILE), resolved_flags())
        checkpoints.write_model_config(FLAGS.model_dir, model)
        log_dir = os.path.join(FLAGS.model_dir, "logs")
        if int(state.global_step) == 0:
            _write_hparams(log_dir, config.flag_values())

    def options(seed, training):
        return pipeline.PipelineOptions(
            spec,
            batch_size=FLAGS.batch_size,
            crop_size=FLAGS.crop_size,
            shuffle_buffer=FLAGS.shuffle_buffer,
            seed=seed,
            drop_remainder=training,
            parallel_calls=os.cpu_count() or 1,
            data_consistency=FLAGS.data_consistency,
            file_shard=(task.num_workers, task.index),
        )

    validation = pipeline.make_dataset(
        FLAGS.data_dir, FLAGS.val_split, options(FLAGS.seed, False), training=False
    )
    images = fixed_validation_slices(validation, FLAGS.num_images) if task.is_chief else None
    guard = callbacks.DivergenceGuard(state)
    every_step = [
        callbacks.StepCounter(state),
        guard,
        callbacks.PeriodicCheckpoint(checkpointer, state, FLAGS.checkpoint_every_steps, guard),
        callbacks.TensorBoardLogger(
            log_dir, state, FLAGS.log_every_steps, guard, images, comparison_image
        ),
    ]
    # Every worker evaluates the whole validation split (the means are then the same on
    # all, and so is their average).
    validation = validation.map(_model_inputs).with_options(_no_auto_sharding())

    def close_epoch():
        state.epoch.assign_add(1)
        state.step_in_epoch.assign(0)
        checkpointer.save()

    history = {}
    while int(state.epoch) < total_epochs:
        epoch = int(state.epoch)
        done = int(state.step_in_epoch)
        if done >= steps_per_epoch:
            # Killed between the epoch's last step (checkpointed by --checkpoint_every_steps)
            # and its end: the epoch's steps are all done; fit(steps_per_epoch=0) would
            # run forever on the repeated data. Its validation is skipped.
            print(f"epoch {epoch + 1}: all {done} steps were done before the restart", flush=True)
            close_epoch()
            continue
        # The data order and training masks of an epoch depend on the seed and the epoch
        # only, so that a resumed epoch sees the batches the killed run would have seen.
        training = pipeline.make_dataset(
            FLAGS.data_dir,
            FLAGS.train_split,
            options(FLAGS.seed * 100_003 + epoch, True),
            training=True,
        )
        # repeat(): Keras warns when a dataset ends exactly at steps_per_epoch.
        # Already split by file for this worker (pipeline.PipelineOptions.file_shard).
        # With N workers, the strategy splits each global batch of a worker's dataset
        # over N steps, so `done` steps consumed done // N of its batches (exactly the
        # killed run's position on one worker; within a batch with several).
        training = training.map(_model_inputs).repeat().skip(done // task.num_workers)
        training = training.with_options(_no_auto_sharding())
        started = time.monotonic()
        if done:
            print(f"epoch {epoch + 1}/{total_epochs}: resumed at step {done}", flush=True)
        progress = callbacks.EpochProgress(epoch, total_epochs, steps_per_epoch, done)
        with pipeline.naming_damaged_records(FLAGS.data_dir, FLAGS.train_split, FLAGS.val_split):
            result = model.fit(
                training,
                initial_epoch=epoch,
                epochs=epoch + 1,
                steps_per_epoch=steps_per_epoch - done,
                validation_data=validation,
                # Given, so that Keras need not run into the end of the data to learn it.
                validation_steps=math.ceil(val_slices / FLAGS.batch_size),
                callbacks=every_step + [progress],
                shuffle=False,
                verbose=0,  # EpochProgress is the one progress view
            )
        if guard.diverged:
            bad, where = guard.diverged
            named = ", ".join(f"{name}={value}" for name, value in bad.items())
            latest = checkpointer.manager.latest_checkpoint or "none yet"
            raise TrainingDiverged(
                f"non-finite loss ({named}) at {where}; stopped. The last good checkpoint "
                f"({latest}) is kept; lower --learning_rate or check the data"
            )
        close_epoch()
        history = {name: values[-1] for name, values in result.history.items()}
        logging.info("epoch %d done in %.1f s", epoch + 1, time.monotonic() - started)
    return history


@cli.user_errors_to_exit
def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    final = train()
    if final:
        print("final epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(final.items())))
    print(f"checkpoints and logs in {FLAGS.model_dir}; evaluate with python -m tfmri.evaluate")


if __name__ == "__main__":
    cli.run(main)
