"""The training model: losses, schedule, train/test steps and precision modes."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import structural_similarity

from tfmri.evaluation import metrics
from tfmri.models import image_metrics, optimizers, pix2pix

SIZE = 64


def _config(**overrides):
    values = dict(
        image_size=SIZE,
        depth=3,
        base_filters=8,
        dropout=0.0,
        norm="instance",
        d_base_filters=8,
        d_norm="instance",
    )
    return pix2pix.ModelConfig(**{**values, **overrides})


def _batch(seed=0, batch=4):
    """A fixed batch: a smooth target, and an input with noise added (a denoising task)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, SIZE)
    target = np.stack(
        [np.outer(np.cos(3 * grid * (i + 1)), np.sin(2 * grid)) for i in range(batch)]
    )
    target = target[..., None].astype(np.float32)
    zero_filled = (target + 0.5 * rng.standard_normal(target.shape)).astype(np.float32)
    inputs = {
        "zero_filled": zero_filled,
        "mean": np.full(batch, 2.0, np.float32),
        "std": np.full(batch, 0.5, np.float32),
        "max_value": np.full(batch, 2.5, np.float32),
    }
    return inputs, target


def _compiled(config, precision="float32", learning_rate=1e-3):
    model = pix2pix.ReconstructionModel(config)
    optimizers = [
        pix2pix.make_optimizer(learning_rate, 0.5, 0.999, precision, name) for name in ("g", "d")
    ]
    model.compile(*optimizers)
    return model


@pytest.mark.parametrize("discriminator", ["none", "patch", "pixel"])
def test_training_decreases_l1_on_a_fixed_batch(discriminator):
    keras.utils.set_random_seed(1)
    model = _compiled(_config(discriminator=discriminator))
    data = tf.data.Dataset.from_tensors(_batch())
    before = model.evaluate(data, return_dict=True, verbose=0)["G_L1"]
    history = model.fit(data.repeat(30), epochs=1, verbose=0, shuffle=False).history
    after = model.evaluate(data, return_dict=True, verbose=0)["G_L1"]
    assert after < 0.7 * before
    expected = {"G_L1"} if discriminator == "none" else {"G_L1", "D_real", "D_fake", "G_GAN"}
    assert set(history) == expected
    validation = model.evaluate(data, return_dict=True, verbose=0)
    assert set(validation) == {"G_L1", "nmse", "psnr", "ssim"}


def test_generator_loss_uses_the_discriminator_after_its_update():
    """One step: D moves; G's GAN loss equals that of the updated D on the old G's output."""
    keras.utils.set_random_seed(2)
    model = _compiled(_config(discriminator="pixel"))
    inputs, target = _batch()
    inputs = {key: tf.constant(value) for key, value in inputs.items()}
    fake = model.generator(inputs["zero_filled"], training=True)
    d_before = [w.numpy() for w in model.discriminator.weights]
    logs = model.train_step((inputs, tf.constant(target)))
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(d_before, model.discriminator.weights))
    expected = pix2pix.gan_loss(
        model.discriminator([inputs["zero_filled"], fake], training=True), True, "vanilla"
    )
    assert float(logs["G_GAN"]) == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-4)


def test_gan_losses():
    zeros = tf.zeros([2, 3, 3, 1])
    np.testing.assert_allclose(pix2pix.gan_loss(zeros, True, "vanilla"), [math.log(2)] * 2, 1e-6)
    logits = tf.fill([1, 2, 2, 1], 3.0)
    real = pix2pix.gan_loss(logits, True, "vanilla").numpy()
    np.testing.assert_allclose(real, [math.log1p(math.exp(-3.0))], rtol=1e-6)
    np.testing.assert_allclose(pix2pix.gan_loss(logits, True, "lsgan"), [4.0])
    np.testing.assert_allclose(pix2pix.gan_loss(logits, False, "lsgan"), [9.0])
    with pytest.raises(ValueError):
        pix2pix.gan_loss(logits, True, "wgan")


def test_linear_decay_schedule():
    schedule = pix2pix.LinearDecay(2e-4, constant_steps=100, decay_steps=50)
    values = [float(schedule(step)) for step in (0, 99, 100, 125, 150, 400)]
    np.testing.assert_allclose(values, [2e-4, 2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-12)
    restored = pix2pix.LinearDecay.from_config(schedule.get_config())
    assert float(restored(125)) == pytest.approx(1e-4)
    assert float(pix2pix.LinearDecay(1e-3, 10, 0)(1000)) == pytest.approx(1e-3)


def test_slice_metrics_equal_scikit_image_and_the_volume_metrics():
    rng = np.random.default_rng(3)
    gt = rng.random((3, 48, 40)).astype(np.float32) * 3
    pred = (gt + 0.2 * rng.standard_normal(gt.shape)).astype(np.float32)
    data_range = np.array([3.0, 2.5, 4.0], np.float32)
    ssim = image_metrics.ssim(gt[..., None], pred[..., None], data_range).numpy()
    expected = [
        structural_similarity(g, p, data_range=float(r)) for g, p, r in zip(gt, pred, data_range)
    ]
    np.testing.assert_allclose(ssim, expected, atol=1e-4)
    psnr = image_metrics.psnr(gt[..., None], pred[..., None], data_range).numpy()
    nmse = image_metrics.nmse(gt[..., None], pred[..., None]).numpy()
    for index in range(3):
        assert psnr[index] == pytest.approx(
            metrics.psnr(gt[index], pred[index], float(data_range[index])), rel=1e-4
        )
        assert nmse[index] == pytest.approx(metrics.nmse(gt[index], pred[index]), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_each_precision_trains_with_float32_outputs(precision):
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(4)
        model = _compiled(_config(discriminator="patch", ssim_weight=1.0), precision)
        if precision == "mixed_float16":
            assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        data = tf.data.Dataset.from_tensors(_batch())
        before = [w.numpy().copy() for w in model.generator.trainable_weights]
        # float16 skips its first steps while the dynamic loss scale comes down
        history = model.fit(data.repeat(12), epochs=1, verbose=0, shuffle=False).history
        assert all(math.isfinite(values[-1]) for values in history.values())
        assert any(
            not np.array_equal(a, b.numpy())
            for a, b in zip(before, model.generator.trainable_weights)
        )
        output = model(_batch()[0])
        assert output.dtype == tf.float32
        compute_dtype = precision.replace("mixed_", "")
        assert model.generator.get_layer("down1_conv").compute_dtype == compute_dtype
        assert all(w.dtype == "float32" for w in model.generator.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_config_round_trip_rebuilds_the_same_model():
    model = pix2pix.ReconstructionModel(_config(discriminator="patch", gan_mode="lsgan"))
    rebuilt = pix2pix.ReconstructionModel.from_config(model.get_config())
    assert rebuilt.config == model.config
    assert [w.shape for w in rebuilt.generator.weights] == [
        w.shape for w in model.generator.weights
    ]
    assert rebuilt.discriminator.count_params() == model.discriminator.count_params()


def test_model_without_discriminator_needs_no_d_optimizer_and_with_one_does():
    unet = pix2pix.ReconstructionModel(_config(discriminator="none"))
    unet.compile(pix2pix.make_optimizer(1e-3, 0.5, 0.999, "float32", "g"))
    assert unet.discriminator is None
    gan = pix2pix.ReconstructionModel(_config(discriminator="patch"))
    with pytest.raises(ValueError, match="d_optimizer"):
        gan.compile(pix2pix.make_optimizer(1e-3, 0.5, 0.999, "float32", "g"))


def test_fused_adam_follows_keras_adam():
    def train(optimizer):
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(1)])
        model.compile(optimizer, "mse")
        initial = [w.numpy() for w in model.weights]
        x = np.random.default_rng(5).standard_normal((16, 6)).astype(np.float32)
        model.fit(x, x.sum(axis=1, keepdims=True), batch_size=8, epochs=4, verbose=0, shuffle=False)
        return initial, [w.numpy() for w in model.weights], optimizer

    initial, reference, _ = train(keras.optimizers.Adam(1e-2, beta_1=0.5, beta_2=0.99))
    _, fused, optimizer = train(optimizers.FusedAdam(1e-2, beta_1=0.5, beta_2=0.99))
    assert int(optimizer.iterations) == 8
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, reference))
    assert moved > 0.05  # 8 steps of 1e-2 moved the weights far beyond the tolerance
    for a, b in zip(reference, fused):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_padded_validation_batches_score_like_the_real_slices():
    # Under a strategy every replica needs a slice: validation batches are padded to a
    # multiple of the replicas with slices weighted 0, which leave the metrics unchanged.
    from tfmri.training import train

    rng = np.random.default_rng(3)
    inputs = {
        "zero_filled": rng.standard_normal((3, 32, 32, 1)).astype(np.float32),
        "mean": np.zeros(3, np.float32),
        "std": np.ones(3, np.float32),
        "max_value": np.full(3, 6.0, np.float32),
    }
    target = rng.standard_normal((3, 32, 32, 1)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices((inputs, target)).batch(1)  # 3 batches of 1
    padded = list(train.whole_replica_batches(batches, 2))
    assert [int(tf.shape(t)[0]) for _, t in padded] == [2, 2, 2]
    assert all(list(i["weight"].numpy()) == [1.0, 0.0] for i, _ in padded)
    np.testing.assert_array_equal(padded[0][0]["zero_filled"][1], inputs["zero_filled"][0])

    config = pix2pix.ModelConfig(
        image_size=32, depth=2, base_filters=4, dropout=0.0, norm="instance", discriminator="none"
    )
    model = pix2pix.ReconstructionModel(config)
    model.compile(keras.optimizers.Adam(1e-3))
    # Another last slice per batch, weighted 0: the same figures as the 3 slices alone.
    skewed = train.whole_replica_batches(batches, 2).map(
        lambda i, t: (
            {**i, "zero_filled": i["zero_filled"] * tf.constant([1.0, 9.0])[:, None, None, None]},
            t,
        )
    )
    plain = model.evaluate(batches, verbose=0, return_dict=True)
    weighted = model.evaluate(skewed, verbose=0, return_dict=True)
    for name in ("G_L1", "nmse", "psnr", "ssim"):
        assert math.isclose(plain[name], weighted[name], rel_tol=1e-6), name
    unweighted = model.evaluate(
        skewed.map(lambda i, t: ({k: v for k, v in i.items() if k != "weight"}, t)),
        verbose=0,
        return_dict=True,
    )
    assert not math.isclose(plain["G_L1"], unweighted["G_L1"], rel_tol=1e-3)


def test_step_conv_flops_counts_the_passes_of_a_step_by_hand():
    model = pix2pix.ReconstructionModel(
        pix2pix.ModelConfig(
            image_size=8,
            depth=2,
            base_filters=2,
            dropout=0.0,
            norm="batch",
            discriminator="patch",
            n_layers=1,
            d_base_filters=2,
        )
    )
    # 2 FLOPs per multiply-add of a 4 x 4 kernel. Generator: down0 8 -> 4 (1 -> 2
    # channels, 16 output pixels), down1 4 -> 2 (2 -> 4, 4 pixels), up0 2 -> 4 (4 -> 2,
    # 4 input pixels), out 4 -> 8 (2 + 2 skip -> 1, 16 input pixels).
    down0 = 2 * 16 * 1 * 2 * 16
    generator = down0 + 2 * 16 * 2 * 4 * 4 + 2 * 16 * 4 * 2 * 4 + 2 * 16 * 4 * 1 * 16
    # PatchGAN with one stride-2 layer: 8 -> 4 (2 inputs -> 2 channels), then the
    # stride-1 layers on maps padded by one pixel: 4 -> 3 (2 -> 4), 3 -> 2 (4 -> 1).
    conv0 = 2 * 16 * 2 * 2 * 16
    discriminator = conv0 + 2 * 16 * 2 * 4 * 9 + 2 * 16 * 4 * 1 * 4
    assert pix2pix.step_conv_flops(model) == {
        # forward, kernel gradients, input gradients but the first layer's
        "generator": 3 * generator - down0,
        # 3 forward passes, kernel gradients in 2, input gradients in 3 (the first
        # layer's only in the generator's pass, which needs the fake image's gradient)
        "discriminator": 3 * discriminator + 2 * discriminator + 3 * discriminator - 2 * conv0,
    }
    without = pix2pix.ReconstructionModel(dataclasses.replace(model.config, discriminator="none"))
    assert pix2pix.step_conv_flops(without) == {"generator": 3 * generator - down0}
    cascade = dataclasses.replace(model.config, generator="cascade", data_consistency=True)
    with pytest.raises(ValueError, match="U-Net"):
        pix2pix.step_conv_flops(pix2pix.ReconstructionModel(cascade))
