"""The optimisation flags (``OptimizerConfig``): Adam, epochs, learning-rate schedule, seed."""

from absl import flags

flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate of both networks.")
flags.DEFINE_float("beta1", 0.5, "Adam beta_1.")
flags.DEFINE_float("beta2", 0.999, "Adam beta_2.")
flags.DEFINE_integer("epochs", 100, "Epochs at the constant learning rate.")
flags.DEFINE_integer("epochs_decay", 100, "Epochs of linear decay of the learning rate to 0.")
flags.DEFINE_integer(
    "max_steps_per_epoch", 0, "Cap on the steps of an epoch (0: the whole training split)."
)
flags.DEFINE_integer("seed", 0, "Seed of the weights, data order and training masks.")
