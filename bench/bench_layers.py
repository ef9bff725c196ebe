"""The reference step's convolutions one at a time, and the alternatives tried for them.

  python bench/bench_layers.py [--repeats=15] [--only=transposed]

Each case times one layer of the pix2pix reference setting (unet_256 + 70 x 70
PatchGAN, 256 x 256, batch 1, float32): the forward pass and both gradients (input and
kernel) in one tf.function, the median of --repeats calls after 3 warm-up calls, on
random tensors. It is timed as Keras computes it (oneDNN) and as each alternative
does, and each alternative's largest difference from Keras's result is printed
beside it, so that a fast but wrong variant shows:

* the generator's transposed convolutions: as matrix products (the way
  tfmri.models.matmul_conv computes the innermost levels), and as four stride-1 phases
  (each output pixel parity is a 2 x 2 convolution of the input);
* its stride-2 convolutions: as space-to-depth then a stride-1 2 x 2 convolution, and
  as matrix products;
* the PatchGAN's stride-1 convolution, 32 x 32 x 256 -> 512 (a third of the step's
  multiply-adds), and the demo's: by Winograd's F(3 x 3, 4 x 4)
  (tfmri.models.winograd, which tfmri uses there), with 3.5 x fewer multiplies;
* the same layer at other widths, sides and batches (``--only="stride-1 sweep"``),
  which sets where Winograd starts to pay (networks.WINOGRAD_MIN_CHANNELS);
* the batched matrix product that Winograd's variant spends its time in.

The other alternatives live here, not in tfmri: none made the step faster
(docs/results.md#training-step-against-pytorch; per layer,
docs/results.md#figures-behind-design-choices). bench_train.py times the whole step.
"""

import statistics
import time

from absl import flags

from tfmri import cli

cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmri.models import matmul_conv, winograd  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 15, "Timed calls per variant (after 3 warm-up calls).")
flags.DEFINE_multi_string("only", None, "Run only the cases whose name starts with this.")


def transposed(x, kernel):
    """Keras's ``Conv2DTranspose(4, strides=2, "same")``: ``[B, H, W, C_in]`` ->
    ``[B, 2H, 2W, C_out]`` for a ``kernel`` [4, 4, C_out, C_in]."""
    batch, height, width, _ = x.shape
    shape = [batch, 2 * height, 2 * width, kernel.shape[2]]
    return tf.nn.conv2d_transpose(x, kernel, shape, 2, "SAME")


def transposed_by_phases(x, kernel):
    """:func:`transposed` as four stride-1 transposed 2 x 2 convolutions, one per output
    pixel parity, computed as one with 4 C_out channels.

    Along one axis, output 2m takes input m - 1 with tap 3 and m with tap 1; output
    2m + 1 takes m with tap 2 and m + 1 with tap 0. A stride-1 "valid" transposed
    convolution with taps (t0, t1) gives ``q[s] = x[s] t0 + x[s - 1] t1``, so parity 0
    is ``q[m]`` with taps (1, 3) and parity 1 is ``q[m + 1]`` with taps (0, 2).
    """
    batch, height, width, _ = x.shape
    out = kernel.shape[2]
    # Tap k = 2 u + (1 - parity): split k into (u, 1 - parity), flip to (u, parity).
    taps = tf.reverse(tf.reshape(kernel, [2, 2, 2, 2, out, -1]), [1, 3])
    taps = tf.reshape(tf.transpose(taps, [0, 2, 1, 3, 4, 5]), [2, 2, 4 * out, -1])
    shape = [batch, height + 1, width + 1, 4 * out]
    q = tf.nn.conv2d_transpose(x, taps, shape, 1, "VALID")
    q = tf.reshape(q, [batch, height + 1, width + 1, 2, 2, out])

    # tf.slice: Python slicing's gradient (StridedSliceGrad) is slow (tfmri.models.winograd).
    def phase(a, b):  # [B, height, 1, width, 1, out]
        cut = tf.slice(q, [0, a, b, a, b, 0], [-1, height, width, 1, 1, out])
        return tf.reshape(cut, [batch, height, 1, width, 1, out])

    rows = [tf.concat([phase(a, b) for b in range(2)], axis=4) for a in range(2)]
    return tf.reshape(tf.concat(rows, axis=2), [batch, 2 * height, 2 * width, out])


def strided(x, kernel):
    """Keras's ``Conv2D(4, strides=2, "same")`` for a ``kernel`` [4, 4, C_in, C_out]."""
    return tf.nn.conv2d(x, kernel, 2, "SAME")


def strided_by_space_to_depth(x, kernel):
    """:func:`strided` as a stride-1 2 x 2 convolution of the padded input's 2 x 2 blocks.

    With one pixel of padding, output i takes padded rows 2i ... 2i + 3, which are
    blocks i and i + 1; tap k = 2 p + a is block p's row a.
    """
    channels_in, channels_out = kernel.shape[2], kernel.shape[3]
    blocks = tf.nn.space_to_depth(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)
    taps = tf.transpose(
        tf.reshape(kernel, [2, 2, 2, 2, channels_in, channels_out]), [0, 2, 1, 3, 4, 5]
    )
    return tf.nn.conv2d(blocks, tf.reshape(taps, [2, 2, 4 * channels_in, channels_out]), 1, "VALID")


def unit_stride(x, kernel):
    """The PatchGAN's stride-1 convolution on an input already padded: "valid"."""
    return tf.nn.conv2d(x, kernel, 1, "VALID")


# name: (function, input [B, H, W, C_in], kernel shape, multiply-adds of the layer,
# alternatives). The generator's levels of the reference setting: up_l maps 256 >> (l + 2)
# to 256 >> (l + 1) with 2 x f(l + 1) input channels; down_l maps 256 >> l to half.
def _transposed_case(side, channels_in, channels_out):
    alternatives = {"matrix products": matmul_conv.conv_transpose, "phases": transposed_by_phases}
    shape = (4, 4, channels_out, channels_in)
    return (
        transposed,
        (1, side, side, channels_in),
        shape,
        16 * channels_in * channels_out * side**2,
        alternatives,
    )


def _strided_case(side, channels_in, channels_out):
    alternatives = {
        "space-to-depth": strided_by_space_to_depth,
        "matrix products": matmul_conv.conv,
    }
    shape = (4, 4, channels_in, channels_out)
    return (
        strided,
        (1, side, side, channels_in),
        shape,
        4 * channels_in * channels_out * side**2,
        alternatives,
    )


def _unit_stride_case(batch, side, channels_in, channels_out):
    out = side - 3
    return (
        unit_stride,
        (batch, side, side, channels_in),
        (4, 4, channels_in, channels_out),
        batch * 16 * channels_in * channels_out * out**2,
        {"Winograd F(3x3, 4x4)": winograd.conv},
    )


CASES = {
    "transposed up0 64 -> 128, 256 -> 64": _transposed_case(64, 256, 64),
    "transposed up1 32 -> 64, 512 -> 128": _transposed_case(32, 512, 128),
    "transposed up2 16 -> 32, 1024 -> 256": _transposed_case(16, 1024, 256),
    "transposed up3 8 -> 16, 1024 -> 512": _transposed_case(8, 1024, 512),
    "strided down1 128 -> 64, 64 -> 128": _strided_case(128, 64, 128),
    "strided down2 64 -> 32, 128 -> 256": _strided_case(64, 128, 256),
    "strided down3 32 -> 16, 256 -> 512": _strided_case(32, 256, 512),
    "PatchGAN stride 1, 34 -> 31, 256 -> 512": _unit_stride_case(1, 34, 256, 512),
    # The demo's PatchGAN (configs/demo.cfg: 320 x 320, 16 base filters, batch 8).
    "PatchGAN demo stride 1, batch 8, 42 -> 39, 64 -> 128": _unit_stride_case(8, 42, 64, 128),
    # Where Winograd starts to pay (networks.WINOGRAD_MIN_CHANNELS): other widths,
    # sides and batches of the same layer.
    **{
        f"stride-1 sweep, batch {batch}, {side} -> {side - 3}, {c_in} -> {c_out}": (
            _unit_stride_case(batch, side, c_in, c_out)
        )
        for batch, side, c_in, c_out in (
            (1, 34, 64, 128),
            (1, 34, 128, 256),
            (8, 34, 128, 256),
            (4, 42, 256, 512),
            (1, 18, 512, 512),
        )
    },
}


def median_seconds(call):
    """Median seconds of ``call()`` over --repeats calls after 3 warm-up calls, and what
    the last call returned. ``call`` must wait for its result (return NumPy arrays)."""
    for _ in range(3):
        call()
    seconds = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def time_layer(layer, x, kernel, upstream):
    """Median seconds of the forward pass and both gradients, and the three results."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = layer(x, kernel)
        return (y, *tape.gradient(y, [x, kernel], output_gradients=upstream))

    return median_seconds(lambda: [t.numpy() for t in step()])


BATCHED = "batched matrix product 36 x [121 x 256] x [256 x 512]"


def time_batched_products():
    """The Winograd variant's matrix products alone (:data:`BATCHED`): median seconds."""
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((36, 121, 256)), tf.float32)
    b = tf.constant(rng.standard_normal((36, 256, 512)), tf.float32)
    product = tf.function(lambda: tf.matmul(a, b))
    return median_seconds(lambda: product().numpy())[0]


def report_layer(name, rng):
    layer, input_shape, kernel_shape, multiply_adds, alternatives = CASES[name]
    x = tf.constant(rng.standard_normal(input_shape), tf.float32)
    kernel = tf.constant(rng.standard_normal(kernel_shape) * 0.05, tf.float32)
    upstream = tf.constant(rng.standard_normal(layer(x, kernel).shape), tf.float32)
    gflop = 3 * 2 * multiply_adds / 1e9
    seconds, reference = time_layer(layer, x, kernel, upstream)
    print(f"\n{name}: {gflop:.2f} GFLOP")
    print(f"  {'oneDNN (Keras)':<24}{seconds * 1e3:7.1f} ms {gflop / seconds:6.0f} GFLOP/s")
    for label, alternative in alternatives.items():
        seconds, results = time_layer(alternative, x, kernel, upstream)
        error = max(
            float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
            for ours, theirs in zip(results, reference)
        )
        print(
            f"  {label:<24}{seconds * 1e3:7.1f} ms {gflop / seconds:6.0f} GFLOP/s"
            f"  (largest difference {error:.1e} of the largest value)"
        )


def main(argv):
    del argv
    if FLAGS.repeats < 1:
        cli.fail(f"--repeats={FLAGS.repeats}: use 1 or more")
    every = [*CASES, BATCHED]
    names = [n for n in every if not FLAGS.only or any(n.startswith(o) for o in FLAGS.only)]
    if not names:
        cli.fail(f"--only={FLAGS.only} matches no case; cases: {', '.join(every)}")
    rng = np.random.default_rng(0)
    print(
        f"forward + input and kernel gradients, median of {FLAGS.repeats} calls, float32, "
        "batch 1 unless the case names another"
    )
    for name in names:
        if name == BATCHED:
            seconds = time_batched_products()
            flops = 2 * 36 * 121 * 256 * 512
            print(f"\n{name}: {seconds * 1e3:.1f} ms {flops / seconds / 1e9:.0f} GFLOP/s (forward)")
        else:
            report_layer(name, rng)


if __name__ == "__main__":
    cli.run(main)
