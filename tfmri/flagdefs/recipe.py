"""The flags of a training run's whole recipe, and the typed RunConfig built from them.

A flagfile in ``configs/`` sets these; ``tfmri.train``, ``tfmri.evaluate``,
``tfmri.export`` and ``tfmri.report`` import this module, so that each reads the same
flagfiles (a run's saved ``flags.cfg`` included).
"""

import dataclasses

from tfmri import run_config
from tfmri.errors import UserError
from tfmri.flagdefs import data, mask, model, optimizer, runtime  # noqa: F401 - define flags
from tfmri.models import pix2pix

MODULES = tuple(module.__name__ for module in (data, mask, model, optimizer, runtime))


def _fields(cls, values, skip=()):
    """{field: value of the flag of the same name} for the fields of dataclass ``cls``."""
    return {
        field.name: values[field.name].value
        for field in dataclasses.fields(cls)
        if field.name not in skip
    }


def data_config(values) -> run_config.DataConfig:
    return run_config.DataConfig(**_fields(run_config.DataConfig, values))


def model_config(values) -> pix2pix.ModelConfig:
    """The networks and losses of the flags; the model sees the --crop_size crop."""
    # The crop sets the image size, --model the discriminator, the training data multicoil.
    skip = ("image_size", "discriminator", "multicoil")
    fields = _fields(pix2pix.ModelConfig, values, skip=skip)
    discriminator = values.discriminator if values.model == "pix2pix" else "none"
    try:
        config = pix2pix.ModelConfig(
            image_size=values.crop_size, discriminator=discriminator, **fields
        )
    except ValueError as error:
        raise UserError(f"model flags: {error}") from None
    return config  # RunConfig checks it further (run_config.check_model)


def run_config_of(values) -> run_config.RunConfig:
    """The RunConfig of the recipe flags of ``values`` (absl FlagValues), checked; a
    UserError names the first bad flag."""
    return run_config.RunConfig(
        data=data_config(values),
        mask=mask.spec(values),
        model=model_config(values),
        optimizer=run_config.OptimizerConfig(**_fields(run_config.OptimizerConfig, values)),
        runtime=run_config.RuntimeConfig(**_fields(run_config.RuntimeConfig, values)),
    )
