"""The typed recipe of a training run: what ``tfmri.train`` runs and what it saves.

``RunConfig`` groups frozen dataclasses: the data (:class:`DataConfig`), the masks
(:class:`tfmri.data.masks.MaskSpec`), the networks and their losses
(:class:`tfmri.models.pix2pix.ModelConfig`), the optimisation (:class:`OptimizerConfig`)
and where and how it runs (:class:`RuntimeConfig`). The applications build one from
their flags in ``main()`` only (``tfmri.flagdefs.recipe``) and take it as an argument;
a training run saves it as ``run_config.json`` in its ``--model_dir``, and
:meth:`RunConfig.load` restores the whole recipe from there.

A field has the name of the flag that sets it, so the checks here raise a UserError
naming the flag (``--batch_size=0: must be >= 1``).
"""

import dataclasses
import json
import os

from tfmri import fileio
from tfmri.data import masks
from tfmri.errors import UserError
from tfmri.models import networks, pix2pix

RUN_CONFIG_FILE = "run_config.json"
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _at_least(config, names, lowest):
    for name in names:
        value = getattr(config, name)
        if value < lowest:
            raise UserError(f"--{name}={value}: must be >= {lowest}")


def _one_of(name, value, choices):
    if value not in choices:
        raise UserError(f"--{name}={value}: choose one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The converted data a run reads, and how it is cut into batches."""

    data_dir: str
    train_split: str = "singlecoil_train"
    val_split: str = "singlecoil_val"
    crop_size: int = 320
    batch_size: int = 8
    shuffle_buffer: int = 64

    def __post_init__(self):
        if not self.data_dir:
            raise UserError("--data_dir is required: the converter's --output_dir")
        _at_least(self, ("crop_size", "batch_size"), 1)
        _at_least(self, ("shuffle_buffer",), 0)

    def check_exists(self):
        """UserError unless ``data_dir`` is a directory."""
        if not os.path.isdir(self.data_dir):
            raise UserError(
                f"--data_dir={self.data_dir}: no such directory; convert data there with "
                "python -m tfmri.convert"
            )


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam on both networks, a constant then linearly decaying learning rate."""

    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int = 100
    epochs_decay: int = 100
    max_steps_per_epoch: int = 0
    seed: int = 0

    def __post_init__(self):
        _at_least(self, ("epochs", "epochs_decay", "max_steps_per_epoch"), 0)
        if self.epochs + self.epochs_decay < 1:
            raise UserError("--epochs + --epochs_decay must be >= 1")
        if not self.learning_rate > 0:
            raise UserError(f"--learning_rate={self.learning_rate}: must be > 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be in [0, 1)")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where a run writes, on which devices and in which precision, and what it logs."""

    model_dir: str
    strategy: str = "default"
    num_cpu_devices: int = 0
    precision: str = "float32"
    deterministic: bool = False
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    log_every_steps: int = 10
    num_images: int = 4

    def __post_init__(self):
        if not self.model_dir:
            raise UserError("--model_dir is required: where the checkpoints and logs go")
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("precision", self.precision, PRECISIONS)
        _at_least(self, ("keep_checkpoints",), 1)
        names = ("num_cpu_devices", "checkpoint_every_steps", "log_every_steps", "num_images")
        _at_least(self, names, 0)


def check_model(model: pix2pix.ModelConfig):
    """UserError naming the flag when the networks cannot be built as configured."""
    _at_least(model, ("depth", "base_filters", "d_base_filters", "n_layers"), 1)
    if model.generator == "cascade":
        _at_least(model, ("cascades",), 1)
    if not 0 <= model.dropout < 1:
        raise UserError(f"--dropout={model.dropout}: must be in [0, 1)")
    depth_limit = networks.max_depth(model.image_size)
    if model.depth > depth_limit:
        multiple = 2**model.depth
        nearest = max(multiple, model.image_size // multiple * multiple)
        other_depth = f" or --depth={depth_limit} or less" if depth_limit >= 1 else ""
        raise UserError(
            f"--crop_size={model.image_size} with --depth={model.depth}: the U-Net halves "
            f"the crop {model.depth} times, so it must be a multiple of {multiple}; use "
            f"--crop_size={nearest}{other_depth}"
        )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The whole recipe of a training run."""

    data: DataConfig
    mask: masks.MaskSpec
    model: pix2pix.ModelConfig
    optimizer: OptimizerConfig
    runtime: RuntimeConfig

    # Fields that may differ when a run is resumed: how long it trains, where it runs,
    # and what it logs. Everything else (data, masks, model, losses, optimiser, seed,
    # precision, batch) must match the saved record.
    RESUMABLE = {
        "optimizer": ("epochs", "epochs_decay"),
        "runtime": (
            "model_dir",
            "strategy",
            "num_cpu_devices",
            "deterministic",
            "checkpoint_every_steps",
            "keep_checkpoints",
            "log_every_steps",
            "num_images",
        ),
    }

    def __post_init__(self):
        check_model(self.model)
        if self.model.image_size != self.data.crop_size:
            raise UserError(
                f"--crop_size={self.data.crop_size}: the model is built for "
                f"{self.model.image_size}; they must be equal"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "RunConfig":
        """The RunConfig of :meth:`to_dict`; fields the record lacks (added to tfmri
        since it was written) take their defaults."""
        return cls(
            data=DataConfig(**record["data"]),
            mask=masks.MaskSpec(**record["mask"]),
            model=pix2pix.ModelConfig(**record["model"]),
            optimizer=OptimizerConfig(**record["optimizer"]),
            runtime=RuntimeConfig(**record["runtime"]),
        )

    def save(self, directory):
        """Writes ``<directory>/run_config.json`` (atomically)."""
        fileio.write_json(os.path.join(directory, RUN_CONFIG_FILE), self.to_dict())

    @classmethod
    def load(cls, directory) -> "RunConfig | None":
        """The RunConfig saved in ``directory``, or None if there is none."""
        path = os.path.join(directory, RUN_CONFIG_FILE)
        if not os.path.exists(path):
            return None
        fix = "restore it or use a new --model_dir"
        try:
            with open(path, encoding="utf-8") as handle:
                return cls.from_dict(json.load(handle))
        except UserError as error:  # a value the flags' checks refuse: name the file too
            raise UserError(f"{path}: {error}; {fix}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path}: not a run record of this tfmri ({error}); {fix}") from None

    def changes_from(self, saved: "RunConfig") -> tuple[dict, dict]:
        """({flag: (saved, now)} of the recipe, {flag: (saved, now)} of the resumable
        fields) for every field that differs, values as flags write them; directories
        compare by real path."""
        recipe, resumable = {}, {}
        for group in ("data", "mask", "model", "optimizer", "runtime"):
            old, new = getattr(saved, group), getattr(self, group)
            for field in dataclasses.fields(new):
                before, now = getattr(old, field.name), getattr(new, field.name)
                if field.name.endswith("_dir") and _same_path(before, now):
                    continue
                if before != now:
                    kind = resumable if field.name in self.RESUMABLE.get(group, ()) else recipe
                    kind[_flag_name(group, field.name)] = (_flag_value(before), _flag_value(now))
        return recipe, resumable


def _same_path(first, second):
    return os.path.realpath(first) == os.path.realpath(second)


def _flag_name(group, field):
    """The flag that sets a field (the model's image size is --crop_size)."""
    if group == "model" and field == "image_size":
        return "crop_size"
    if group == "model" and field == "discriminator":
        return "model/--discriminator"
    return field


def _flag_value(value):
    if isinstance(value, (tuple, list)):
        return ",".join(_flag_value(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def flagfile(run: RunConfig) -> str:
    """The run as a flagfile (``--name=value`` lines): rerunning ``tfmri.train`` with
    ``--flagfile=`` it resumes the run; ``tfmri.evaluate`` and ``tfmri.export`` read it."""
    values = {}
    for group in ("data", "mask", "optimizer", "runtime", "model"):
        values.update(dataclasses.asdict(getattr(run, group)))
    values.pop("image_size")
    values.pop("multicoil")  # what the training data are, not a flag
    discriminator = values.pop("discriminator")
    values["model"] = "unet" if discriminator == "none" else "pix2pix"
    if discriminator != "none":
        values["discriminator"] = discriminator
    return "".join(f"--{name}={_flag_value(value)}\n" for name, value in values.items())
