"""Training of ``python -m tfmri.train``: pix2pix (or the L1 U-Net baseline) on
converted fastMRI data, as :func:`train` of a typed RunConfig.

A run saves its RunConfig as ``<model_dir>/run_config.json`` and as a flagfile,
``<model_dir>/flags.cfg``. Training again with the same recipe resumes from the newest
checkpoint in ``--model_dir`` (epoch, step, weights, optimiser states, learning-rate
schedule; data order and masks are a function of the seed and epoch) instead of
starting over. A NaN or infinite loss stops the run with a non-zero exit and leaves
the last good checkpoint as it was.
"""

import dataclasses
import datetime
import json
import math
import os
import socket
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from tfmri import fileio, run_config, runlock, runtime
from tfmri.baselines import cs_tv
from tfmri.data import pipeline
from tfmri.errors import UserError
from tfmri.evaluation import visualize, volumes
from tfmri.models import pix2pix
from tfmri.training import callbacks, checkpoints

# What the model and the metrics need from the pipeline's inputs (no strings: they
# would have to be split over replicas for nothing); the optional ones are there for
# data consistency, and in validation data for scoring against the stored target.
MODEL_INPUTS = ("zero_filled", "mean", "std", "scale", "max_value")
OPTIONAL_INPUTS = ("measured", "mask", "zero_filled_image", "target_image")
HISTORY_FILE = "history.jsonl"  # one line per start or resume of the run, appended


class TrainingDiverged(UserError):
    """A loss became NaN or infinite."""


def model_inputs(inputs, target):
    """The pipeline's (inputs, target) with only the inputs the model takes."""
    keys = MODEL_INPUTS + tuple(key for key in OPTIONAL_INPUTS if key in inputs)
    return {key: inputs[key] for key in keys}, target


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What the converted data holds for a run (read from its manifest)."""

    train_slices: int
    val_slices: int
    shard_slices: tuple  # slices of each training shard, in shard order
    multicoil: bool = False


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """How the run's epochs are cut for this process of the cluster."""

    steps_per_epoch: int
    total_epochs: int
    task: runtime.Task
    replicas: int


def check_data(data: run_config.DataConfig) -> TrainingData:
    """The splits are there, whole, with targets, and wide enough for the crop."""
    data.check_exists()
    manifest, train_entry, _ = pipeline.split_info(data.data_dir, data.train_split)
    val_entry = manifest.split(data.val_split)
    manifest.shard_paths(data.val_split)  # every shard there, whole
    if not train_entry.statistics.has_target:
        raise UserError(
            f"--train_split={data.train_split}: it has no targets (a test split); "
            "train on a split with reconstructions"
        )
    for split in (data.train_split, data.val_split):
        pipeline.check_crop(manifest, split, data.crop_size)
    coils = {*train_entry.statistics.coils, *val_entry.statistics.coils}
    if len(coils) > 1 and 1 in coils:
        raise UserError(
            f"--train_split={data.train_split} --val_split={data.val_split}: one is "
            "single-coil and the other multi-coil; train and validate on one kind"
        )
    return TrainingData(
        sum(train_entry.shard_slices),
        val_entry.num_slices,
        tuple(train_entry.shard_slices),
        multicoil=1 not in coils,
    )


def check_resume(run: run_config.RunConfig) -> dict:
    """Refuses to resume ``--model_dir`` with another recipe; returns the resumable
    fields that changed ({flag: (saved, now)}), for the run's history."""
    model_dir = run.runtime.model_dir
    saved = run_config.RunConfig.load(model_dir)
    if saved is None:
        return {}
    changes, resumable = run.changes_from(saved)
    if changes:
        listed = ", ".join(f"--{name} {old} -> {new}" for name, (old, new) in changes.items())
        allowed = sorted(
            name for names in run.RESUMABLE.values() for name in names if name != "model_dir"
        )
        path = os.path.join(model_dir, checkpoints.FLAGS_FILE)
        raise UserError(
            f"--model_dir={model_dir}: holds a run with another recipe ({listed}); resume "
            f"it with its own flags (--flagfile={path}, changing only "
            f"{', '.join('--' + name for name in allowed)}), or use a new --model_dir"
        )
    return resumable


def plan_epochs(run: run_config.RunConfig, data: TrainingData, task, replicas) -> EpochPlan:
    """Steps per epoch of the global batch; UserError when the batch does not fit the
    replicas, the workers or the data."""
    batch = run.data.batch_size
    if task.num_workers > len(data.shard_slices):
        raise UserError(
            f"--data_dir={run.data.data_dir}: split {run.data.train_split} has "
            f"{len(data.shard_slices)} shard(s) for {task.num_workers} workers, which share "
            f"the training data by file; convert again with --num_shards={task.num_workers} "
            "or more"
        )
    mine = sum(data.shard_slices[task.index :: task.num_workers])
    if task.num_workers > 1 and mine < batch:
        raise UserError(
            f"--batch_size={batch}: worker {task.index}'s shards of {run.data.train_split} "
            f"hold {mine} slices, fewer than one global batch; use a smaller batch or fewer, "
            "larger shards"
        )
    if batch % replicas:
        raise UserError(f"--batch_size={batch}: must be a multiple of the {replicas} replicas")
    steps = data.train_slices // batch
    if steps == 0:
        raise UserError(
            f"--batch_size={batch}: larger than the {data.train_slices} training slices"
        )
    if run.optimizer.max_steps_per_epoch:
        steps = min(steps, run.optimizer.max_steps_per_epoch)
    return EpochPlan(steps, run.optimizer.total_epochs, task, replicas)


def start_lambda(run: run_config.RunConfig, task) -> pix2pix.ModelConfig:
    """The run's ModelConfig with a number for --start_cs_lambda=auto (a cascade started
    from CS-TV): the lambda an earlier start of the run chose (its model.json), else the
    one :func:`tfmri.baselines.cs_tv.choose_on_split` chooses now on the training split,
    masked as the run's mask flags say (as tfmri.report's --cs_lambda=auto chooses
    CS-TV's). Every worker of a multi-worker run chooses it from the same slices by the
    same computation; the chief prints it and keeps it in model.json and history.jsonl."""
    model = run.model
    if not model.starts_from_cs_tv or model.start_cs_lambda != cs_tv.AUTO:
        return model
    if os.path.exists(os.path.join(run.runtime.model_dir, checkpoints.MODEL_CONFIG)):
        saved = checkpoints.read_model_config(run.runtime.model_dir)["config"]
        if saved.get("start_cs_lambda", cs_tv.AUTO) != cs_tv.AUTO:
            return dataclasses.replace(model, start_cs_lambda=saved["start_cs_lambda"])
    split = run.data.train_split
    # The cascade's CS-TV start sees the low-resolution maps of its data consistency
    # (tfmri.models.consistency.maps_of), so lambda is chosen with those.
    chosen, scores = cs_tv.choose_on_split(
        run.data.data_dir, split, run.mask, iterations=model.start_cs_iterations, maps="rss"
    )
    if task.is_chief:
        print(
            f"--start_cs_lambda=auto: CS-TV lambda {chosen:g} on {split}, "
            f"{cs_tv.describe_choice(scores)}",
            flush=True,
        )
    return dataclasses.replace(model, start_cs_lambda=chosen)


def build_model(
    run: run_config.RunConfig, strategy, plan: EpochPlan
) -> pix2pix.ReconstructionModel:
    """The model and its two Adam optimisers, in the strategy's scope, seeded."""
    keras.utils.set_random_seed(run.optimizer.seed)
    opt = run.optimizer
    with strategy.scope():
        model = pix2pix.ReconstructionModel(run.model)
        schedule = pix2pix.LinearDecay(
            opt.learning_rate,
            opt.epochs * plan.steps_per_epoch,
            opt.epochs_decay * plan.steps_per_epoch,
        )
        optimizers = [
            pix2pix.make_optimizer(schedule, opt.beta1, opt.beta2, run.runtime.precision, name)
            for name in ("adam_G", "adam_D")
        ]
        model.compile(*optimizers)
    return model


def own_dir(model_dir, task):
    """Where this process of the run saves: ``model_dir`` for the chief, else its own."""
    return model_dir if task.is_chief else worker_dir(model_dir, task.index)


def worker_dir(model_dir, index):
    """Where non-chief worker ``index`` of a multi-worker run saves its checkpoints."""
    return os.path.join(model_dir, "workers", str(index))


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


def _hparams(run: run_config.RunConfig) -> dict:
    """{flag name: value} of the recipe, for TensorBoard's hparams dashboard."""
    values = {}
    for group in run.to_dict().values():
        values.update(group)
    return {
        name: value if isinstance(value, (bool, int, float, str)) else str(value)
        for name, value in values.items()
        if value is not None
    }


def record_start(run, checkpointer, state, resumed, changed):
    """The chief's records of a start or resume: history line, run_config.json,
    flags.cfg, model.json and (at step 0) the hparams; returns the log directory."""
    model_dir = run.runtime.model_dir
    event = {
        "event": "resume" if resumed else "start",
        "checkpoint": checkpointer.manager.latest_checkpoint if resumed else None,
        "global_step": int(state.global_step),
        "changed": {name: list(values) for name, values in changed.items()},
    }
    model = checkpointer.model.config
    if model.starts_from_cs_tv:  # the number --start_cs_lambda=auto stands for
        event["start_cs_lambda"] = model.start_cs_lambda
    _append_history(model_dir, event)
    run.save(model_dir)
    fileio.write_text(os.path.join(model_dir, checkpoints.FLAGS_FILE), run_config.flagfile(run))
    checkpoints.write_model_config(model_dir, checkpointer.model)
    log_dir = os.path.join(model_dir, "logs")
    if int(state.global_step) == 0:
        with tf.summary.create_file_writer(os.path.join(log_dir, "hparams")).as_default():
            hparams_api.hparams(_hparams(run))
    return log_dir


def _no_auto_sharding():
    """Dataset options: a multi-worker strategy must not split the dataset itself
    (tfmri splits the training files per worker, and validation is not split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _pipeline_options(run, task, seed, training):
    return pipeline.PipelineOptions(
        run.mask,
        batch_size=run.data.batch_size,
        crop_size=run.data.crop_size,
        shuffle_buffer=run.data.shuffle_buffer,
        seed=seed,
        drop_remainder=training,
        parallel_calls=os.cpu_count() or 1,
        data_consistency=run.model.data_consistency,
        file_shard=(task.num_workers, task.index),
    )


def validation_dataset(run, task):
    """The validation split with the fixed per-volume masks (whole, on every worker)."""
    options = _pipeline_options(run, task, run.optimizer.seed, training=False)
    return pipeline.make_dataset(run.data.data_dir, run.data.val_split, options, training=False)


def training_dataset(run, task, epoch, done):
    """Epoch ``epoch``'s training batches from step ``done`` on.

    The data order and training masks of an epoch depend on the seed and the epoch
    only, so that a resumed epoch sees the batches the killed run would have seen.
    """
    seed = run.optimizer.seed * 100_003 + epoch
    options = _pipeline_options(run, task, seed, training=True)
    dataset = pipeline.make_dataset(run.data.data_dir, run.data.train_split, options, training=True)
    # repeat(): Keras warns when a dataset ends exactly at steps_per_epoch. Already
    # split by file for this worker (PipelineOptions.file_shard). With N workers, the
    # strategy splits each global batch of a worker's dataset over N steps, so `done`
    # steps consumed done // N of its batches (exactly the killed run's position on one
    # worker; within a batch with several).
    dataset = dataset.map(model_inputs).repeat().skip(done // task.num_workers)
    return dataset.with_options(_no_auto_sharding())


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


def whole_replica_batches(dataset, replicas):
    """Validation batches padded to a multiple of ``replicas`` slices, with
    ``inputs["weight"]`` 1 for the real slices and 0 for the padding (copies of the
    batch's first slice), which the validation metrics leave out.

    A strategy splits each batch over its replicas; a batch smaller than their count
    (the last one, or every one when data consistency reads slices of several widths
    one at a time) would leave a replica an empty batch, on which TensorFlow's CPU
    convolution fails ("input depth must be evenly divisible by filter depth").
    """
    if replicas == 1:
        return dataset

    def pad(inputs, target):
        size = tf.shape(target)[0]
        missing = (-size) % replicas

        def padded(x):
            return tf.concat([x, tf.repeat(x[:1], missing, axis=0)], axis=0)

        inputs = {key: padded(value) for key, value in inputs.items()}
        inputs["weight"] = tf.concat([tf.ones([size]), tf.zeros([missing])], axis=0)
        return inputs, padded(target)

    return dataset.map(pad)


def fixed_validation_slices(dataset, count):
    """The middle slice of each of the first ``count`` validation volumes: [(inputs, target)]."""
    if count == 0:
        return None
    chosen = []
    for inputs, target in dataset.unbatch():
        if int(inputs["slice_index"]) == int(inputs["num_slices"]) // 2:
            chosen.append(model_inputs(inputs, target))
            if len(chosen) == count:
                break
    # One slice per entry: with data consistency their widths can differ.
    return chosen or None


class EpochLoop:
    """Runs the remaining epochs of a run, one ``fit`` per epoch, resumable at any step."""

    def __init__(self, run, model, checkpointer, plan, data, log_dir):
        self.run, self.model, self.checkpointer = run, model, checkpointer
        self.plan, self.data = plan, data
        self.state = checkpointer.state
        validation = validation_dataset(run, plan.task)
        chief = plan.task.is_chief
        images = fixed_validation_slices(validation, run.runtime.num_images) if chief else None
        # Every worker evaluates the whole validation split (the means are then the
        # same on all, and so is their average).
        validation = whole_replica_batches(validation.map(model_inputs), plan.replicas)
        self.validation = validation.with_options(_no_auto_sharding())
        self.guard = callbacks.DivergenceGuard(self.state)
        runtime_config = run.runtime
        self.callbacks = [
            callbacks.StepCounter(self.state),
            self.guard,
            callbacks.PeriodicCheckpoint(
                checkpointer, self.state, runtime_config.checkpoint_every_steps, self.guard
            ),
            callbacks.TensorBoardLogger(
                log_dir,
                self.state,
                runtime_config.log_every_steps,
                self.guard,
                images,
                comparison_image,
            ),
        ]

    def close_epoch(self):
        self.state.epoch.assign_add(1)
        self.state.step_in_epoch.assign(0)
        self.checkpointer.save()

    def run_all(self) -> dict:
        """Trains to the last epoch; returns the last epoch's metrics ({} if none ran)."""
        history = {}
        while int(self.state.epoch) < self.plan.total_epochs:
            epoch, done = int(self.state.epoch), int(self.state.step_in_epoch)
            if done >= self.plan.steps_per_epoch:
                # Killed between the epoch's last step (checkpointed by
                # --checkpoint_every_steps) and its end: the epoch's steps are all done;
                # fit(steps_per_epoch=0) would run forever on the repeated data. Its
                # validation is skipped.
                print(
                    f"epoch {epoch + 1}: all {done} steps were done before the restart", flush=True
                )
                self.close_epoch()
                continue
            history = self.run_epoch(epoch, done)
        return history

    def run_epoch(self, epoch, done) -> dict:
        """One epoch from step ``done``; raises TrainingDiverged on a non-finite loss."""
        plan, data = self.plan, self.run.data
        started = time.monotonic()
        if done:
            print(f"epoch {epoch + 1}/{plan.total_epochs}: resumed at step {done}", flush=True)
        progress = callbacks.EpochProgress(epoch, plan.total_epochs, plan.steps_per_epoch, done)
        with pipeline.naming_damaged_records(data.data_dir, data.train_split, data.val_split):
            result = self.model.fit(
                training_dataset(self.run, plan.task, epoch, done),
                initial_epoch=epoch,
                epochs=epoch + 1,
                steps_per_epoch=plan.steps_per_epoch - done,
                validation_data=self.validation,
                # Given, so that Keras need not run into the end of the data to learn it.
                validation_steps=math.ceil(self.data.val_slices / data.batch_size),
                callbacks=self.callbacks + [progress],
                shuffle=False,
                verbose=0,  # EpochProgress is the one progress view
            )
        self._stop_if_diverged()
        self.close_epoch()
        logging.info("epoch %d done in %.1f s", epoch + 1, time.monotonic() - started)
        return {name: values[-1] for name, values in result.history.items()}

    def _stop_if_diverged(self):
        if not self.guard.diverged:
            return
        bad, where = self.guard.diverged
        named = ", ".join(f"{name}={value}" for name, value in bad.items())
        latest = self.checkpointer.manager.latest_checkpoint or "none yet"
        raise TrainingDiverged(
            f"non-finite loss ({named}) at {where}; stopped. The last good checkpoint "
            f"({latest}) is kept; lower --learning_rate or check the data"
        )


def train(run: run_config.RunConfig) -> dict:
    """Runs (or resumes) the training ``run`` describes; returns the final metrics.

    The run holds ``--model_dir`` (a multi-worker run's other workers their own
    directories) for its whole length: a second run into it stops at once.
    """
    data = check_data(run.data)
    # What the data are is part of the model: an export takes the k-space it was trained on.
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, multicoil=data.multicoil))
    task = runtime.cluster_task() if run.runtime.strategy == "multi_worker" else runtime.Task()
    model_dir = run.runtime.model_dir
    with runlock.hold(own_dir(model_dir, task), "training", "--model_dir"):
        changed = check_resume(run) if task.is_chief else {}
        return _train(run, data, task, changed)


def _train(run, data, task, changed):
    rt = run.runtime
    strategy = runtime.configure(rt.num_cpu_devices, rt.strategy, rt.precision, rt.deterministic)
    plan = plan_epochs(run, data, task, strategy.num_replicas_in_sync)
    print(
        f"{plan.replicas} replica(s), global batch {run.data.batch_size}, "
        f"{plan.steps_per_epoch} steps per epoch, {plan.total_epochs} epochs",
        flush=True,
    )
    # The recipe (flags.cfg, run_config.json) keeps "auto"; the model (model.json) the number.
    model = build_model(dataclasses.replace(run, model=start_lambda(run, task)), strategy, plan)
    # Multi-worker: every worker saves checkpoints (saving takes part in collectives),
    # but only the chief writes to --model_dir; the others save to a directory of their
    # own and write no logs, flags or model config. All restore from --model_dir.
    state = checkpoints.TrainingState()
    checkpointer = checkpoints.Checkpointer(
        rt.model_dir, model, state, rt.keep_checkpoints, save_dir=own_dir(rt.model_dir, task)
    )
    resumed = checkpointer.restore()
    if resumed:
        print(f"resuming from {checkpointer.manager.latest_checkpoint}: {state.describe()}")
    log_dir = record_start(run, checkpointer, state, resumed, changed) if task.is_chief else None
    return EpochLoop(run, model, checkpointer, plan, data, log_dir).run_all()
