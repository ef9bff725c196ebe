"""Adam on TensorFlow's fused kernel.

Keras 3's Adam updates each variable with separate element-wise ops (first moment,
second moment, then the variable), several passes over memory per step, which shows
for the 54 M parameters of pix2pix's unet_256 generator; TensorFlow's
``ResourceApplyAdam`` kernel does the same update in one pass (timings in
docs/results.md#figures-behind-design-choices). The maths are Keras's Adam without
amsgrad:

  m <- beta_1 m + (1 - beta_1) g,  v <- beta_2 v + (1 - beta_2) g^2,
  w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

and the optimiser's variables are Keras's own, so checkpoints are unchanged.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfmri")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose dense update runs TensorFlow's fused Adam kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
