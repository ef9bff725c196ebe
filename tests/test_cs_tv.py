"""CS-TV: operators against their adjoints, convergence, and quality against zero-filled."""

import glob
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tfmri.baselines import cs_tv
from tfmri.data import coils, fastmri_files, masks, synthetic
from tfmri.evaluation import metrics

SPEC_8X = masks.parse_spec("random", ["0.04"], ["8"])


def _random_complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _inner(a, b):
    return np.vdot(np.asarray(b), np.asarray(a))  # <a, b> = sum(a * conj(b))


def _slices(directory, split, count):
    """(kspace [n, ...], target [n, 320, 320]) of the first volume of a split."""
    path = sorted(glob.glob(os.path.join(directory, split, "*.h5")))[0]
    with h5py.File(path) as handle:
        key = "reconstruction_esc" if handle["kspace"].ndim == 3 else "reconstruction_rss"
        return handle["kspace"][:count], handle[key][:count]


def _masked(kspace):
    mask, _ = masks.MaskFunction(SPEC_8X)(kspace.shape[-1], seed=5)
    return tf.constant(kspace), tf.constant(np.tile(mask, (len(kspace), 1)).astype(np.float32))


@pytest.fixture(scope="module")
def multicoil_raw(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("multicoil_raw"))
    synthetic.generate(
        synthetic.SyntheticSpec(num_volumes=3, num_slices=2, coils=4, seed=4), directory
    )
    return directory


def test_gradient_adjoint_is_the_adjoint():
    rng = np.random.default_rng(0)
    x = _random_complex(rng, (2, 7, 5))
    p = _random_complex(rng, (2, 2, 7, 5))
    lhs = _inner(cs_tv.gradient(x), p)
    rhs = _inner(x, cs_tv.gradient_adjoint(p))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


def test_gradient_norm_bound_used_by_the_step_sizes():
    # ||grad||^2 <= 8: power iteration on grad^T grad stays below it.
    x = tf.constant(_random_complex(np.random.default_rng(1), (1, 32, 24)))
    for _ in range(200):
        x = cs_tv.gradient_adjoint(cs_tv.gradient(x))
        x = x / tf.cast(tf.abs(tf.norm(x)), x.dtype)
    norm = float(tf.abs(tf.norm(cs_tv.gradient_adjoint(cs_tv.gradient(x)))))
    assert 7.0 < norm <= 8.0


def test_multicoil_operator_adjoint_and_norm(multicoil_raw):
    kspace, _ = _slices(multicoil_raw, "multicoil_val", 2)
    kspace, mask = _masked(kspace)
    measured = cs_tv.measured_hybrid(kspace, mask, 320)
    maps = coils.estimate_maps(measured, mask)
    power = tf.reduce_sum(tf.abs(maps) ** 2, axis=1)
    assert float(tf.reduce_max(power)) <= 1.0 + 1e-5
    operator = cs_tv._Operator(mask, maps)
    rng = np.random.default_rng(2)
    x = _random_complex(rng, (2, 320, kspace.shape[-1]))
    q = _random_complex(rng, tuple(measured.shape))
    np.testing.assert_allclose(
        _inner(operator.forward(x), q), _inner(x, operator.adjoint(q)), rtol=1e-4
    )


def test_sampled_columns_operator_is_the_column_fft_on_the_sampled_columns():
    """The compiled multi-coil operator against NumPy's centred FFT at the sampled
    columns, its adjoint, and padding columns that add nothing."""
    rng = np.random.default_rng(3)
    batch, num_coils, height, width = 2, 3, 6, 20
    mask = np.zeros((batch, width), np.float32)
    mask[0, [1, 4, 9, 10, 11, 17]] = 1
    mask[1, [0, 9, 10, 12]] = 1
    maps = _random_complex(rng, (batch, num_coils, height, width))
    x = _random_complex(rng, (batch, height, width))
    columns = cs_tv.column_bucket(6, width)
    assert columns == 8
    operator = cs_tv._SampledOperator(tf.constant(mask), tf.constant(maps), columns)
    coil_images = maps * x[:, None]
    centred = np.fft.fftshift(
        np.fft.fft(np.fft.ifftshift(coil_images, axes=-1), axis=-1, norm="ortho"), axes=-1
    )
    forward = operator.forward(tf.constant(x)).numpy()
    for b in range(batch):
        sampled = np.flatnonzero(mask[b])
        np.testing.assert_allclose(
            forward[b, ..., : len(sampled)], centred[b][..., sampled], atol=1e-4
        )
        np.testing.assert_array_equal(forward[b, ..., len(sampled) :], 0)
    q = _random_complex(rng, forward.shape)
    np.testing.assert_allclose(
        _inner(operator.forward(x), q), _inner(x, operator.adjoint(q)), rtol=1e-4
    )


def test_sampled_center_run_finds_the_fully_sampled_run():
    mask = np.zeros(20, np.float32)
    mask[[1, 3, 8, 9, 10, 11, 12, 16]] = 1  # centre run 8..12 around the middle (10)
    expected = np.zeros(20, np.float32)
    expected[8:13] = 1
    np.testing.assert_array_equal(coils.sampled_center_run(tf.constant(mask)), expected)


def test_fully_sampled_gives_the_image_back(singlecoil_raw):
    kspace, target = _slices(singlecoil_raw, "singlecoil_val", 1)
    full = tf.ones([1, kspace.shape[-1]], tf.float32)
    image = cs_tv.reconstruct(tf.constant(kspace), full, cs_tv.CsTvOptions(1e-6, 20))
    # The target is the cropped magnitude of the fully sampled image.
    assert metrics.nmse(target, image.numpy()) < 1e-6


def test_objective_converges(singlecoil_raw):
    kspace, _ = _slices(singlecoil_raw, "singlecoil_val", 1)
    kspace, mask = _masked(kspace)
    measured = cs_tv.measured_hybrid(kspace, mask, 320)
    run = tf.function(
        lambda iterations: cs_tv.reconstruct_hybrid(
            measured, mask, cs_tv.CsTvOptions(0.005, iterations), record=True
        )[1][0]
    )
    history = run(400).numpy()
    # Chambolle-Pock is not monotone step by step; it converges: the objective falls
    # at each checkpoint along the run and settles near its final value.
    checkpoints = history[[0, 9, 49, 99, 199, 399]]
    assert np.all(np.diff(checkpoints) < 0), checkpoints
    assert history[-1] < 0.9 * history[0]
    assert abs(history[199] - history[399]) < 2e-3 * history[399]
    assert np.all(history[100:] > history[-1] * (1 - 2e-3))


def _beats_zero_filled(kspace, target, multicoil):
    kspace, mask = _masked(kspace)
    image = cs_tv.reconstruct(kspace, mask)
    zero_filled = tf.map_fn(
        lambda args: cs_tv.transforms.cropped_ifft2c(args[0], args[1], 320, 320),
        (kspace, mask),
        fn_output_signature=tf.complex64,
    )
    zero_filled = cs_tv.transforms.rss(zero_filled, axis=1) if multicoil else tf.abs(zero_filled)
    cs = metrics.volume_metrics(target, image.numpy())
    zf = metrics.volume_metrics(target, zero_filled.numpy())
    assert cs["nmse"] < 0.85 * zf["nmse"], (cs, zf)
    assert cs["ssim"] > zf["ssim"] + 0.02, (cs, zf)
    assert cs["psnr"] > zf["psnr"], (cs, zf)


def test_beats_zero_filled_single_coil(singlecoil_raw):
    _beats_zero_filled(*_slices(singlecoil_raw, "singlecoil_val", 2), multicoil=False)


def test_beats_zero_filled_multi_coil(multicoil_raw):
    _beats_zero_filled(*_slices(multicoil_raw, "multicoil_val", 2), multicoil=True)


def test_batch_equals_slices_one_at_a_time(singlecoil_raw):
    kspace, _ = _slices(singlecoil_raw, "singlecoil_val", 2)
    kspace, mask = _masked(kspace)
    options = cs_tv.CsTvOptions(0.005, 30)
    batch = cs_tv.reconstruct(kspace, mask, options).numpy()
    for index in range(2):
        single = cs_tv.reconstruct(kspace[index : index + 1], mask[index : index + 1], options)
        np.testing.assert_allclose(single[0], batch[index], atol=1e-4 * batch.max())


def test_scale_invariance(singlecoil_raw):
    kspace, _ = _slices(singlecoil_raw, "singlecoil_val", 1)
    kspace, mask = _masked(kspace)
    options = cs_tv.CsTvOptions(0.005, 30)
    image = cs_tv.reconstruct(kspace, mask, options).numpy()
    scaled = cs_tv.reconstruct(kspace * 1000.0, mask, options).numpy()
    np.testing.assert_allclose(scaled / 1000.0, image, atol=1e-4 * image.max())


@pytest.mark.parametrize("regularization, iterations", [(0.0, 10), (-1.0, 10), (0.01, 0)])
def test_bad_options(regularization, iterations):
    with pytest.raises(ValueError, match="CS-TV"):
        cs_tv.CsTvOptions(regularization, iterations)


def _tuning_group(kspace, target, noise, rng):
    """(measured, mask, target) of slices with complex Gaussian k-space noise of std
    ``noise`` times the target's maximum (the target stays the clean image)."""
    scale = noise * float(target.max())
    noisy = kspace + scale * _random_complex(rng, kspace.shape)
    measured_kspace, mask = _masked(noisy.astype(np.complex64))
    return cs_tv.measured_hybrid(measured_kspace, mask, 320), mask, target


def test_auto_lambda_smooths_noisy_data_more(singlecoil_raw):
    """--cs_lambda=auto: on data with heavy noise the chosen weight is larger than on
    clean data, and the chosen lambda's scores are those of the solver at that lambda."""
    kspace, target = _slices(singlecoil_raw, "singlecoil_train", 2)
    rng = np.random.default_rng(0)
    grid = (0.0005, 0.002, 0.005, 0.02, 0.1)
    chosen = {}
    for noise in (0.0, 0.1):
        group = _tuning_group(kspace, target, noise, rng)
        chosen[noise], scores = cs_tv.choose_lambda([group], iterations=40, grid=grid)
        assert set(scores) == set(grid) and chosen[noise] in grid
        image = cs_tv.reconstruct_hybrid(group[0], group[1], cs_tv.CsTvOptions(chosen[noise], 40))
        expected = metrics.ssim(target, image.numpy())
        assert scores[chosen[noise]]["ssim"] == pytest.approx(expected, abs=1e-4)
        # Never a lambda whose NMSE is far from the best the grid offers.
        best_nmse = min(score["nmse"] for score in scores.values())
        assert scores[chosen[noise]]["nmse"] <= 1.1 * best_nmse + 1e-12
    assert chosen[0.1] > chosen[0.0]


@pytest.mark.parametrize("text", ["0", "-1", "abc", "nan", ""])
def test_bad_lambda_is_refused(text):
    with pytest.raises(ValueError, match="auto"):
        cs_tv.parse_lambda(text)


def test_lambda_parses_auto_and_numbers():
    assert cs_tv.parse_lambda("auto") == cs_tv.AUTO == cs_tv.parse_lambda(" AUTO ")
    assert cs_tv.parse_lambda("0.01") == 0.01


def _brain_like_file(path, width, recon=160, height=230, coils=8, slices=2):
    """A multi-coil file of the shape the issue reports from a real brain scan: k-space
    8 x 230 x ``width``, recon size ``recon`` x ``recon`` in its header."""
    u, v = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    image = ((u / 0.45) ** 2 + (v / 0.6) ** 2 < 1).astype(np.float32)
    image = image + 0.5 * ((((u - 0.1) / 0.15) ** 2 + ((v + 0.1) / 0.2) ** 2) < 1)
    angles = np.arange(coils) * 2 * np.pi / coils
    maps = np.stack(
        [np.exp(-((u - 0.9 * np.cos(a)) ** 2 + (v - 0.9 * np.sin(a)) ** 2)) for a in angles]
    ).astype(np.complex64)
    kspace = np.stack([synthetic.fft2c(maps * image) for _ in range(slices)]).astype(np.complex64)
    full = np.sqrt((np.abs(synthetic.ifft2c(kspace)) ** 2).sum(axis=1))
    top, left = (height - recon) // 2, (width - recon) // 2
    # A target at the recon size, as fastMRI stores it (zero where the k-space is narrower
    # or shorter).
    target = np.zeros((slices, recon, recon), np.float32)
    rows, columns = min(recon, height), min(recon, width)
    target[:, max(-top, 0) : max(-top, 0) + rows, max(-left, 0) : max(-left, 0) + columns] = full[
        :, max(top, 0) : max(top, 0) + rows, max(left, 0) : max(left, 0) + columns
    ]
    header = fastmri_files.Header((height, width), (recon, recon), 0, width)
    synthetic.write_volume(path, kspace, target, header, "AXFLAIR", "brain")


@pytest.mark.parametrize("width, crop", [(180, (160, 160)), (150, (150, 150))])
def test_runs_at_each_files_recon_size(tmp_path, width, crop):
    # fastMRI's rule: the header's recon size, or W x W where the k-space is only W < the
    # recon width columns wide (its narrow FLAIR brain volumes).
    path = str(tmp_path / "file_brain.h5")
    _brain_like_file(path, width)
    volume = fastmri_files.read_volume(path)
    assert fastmri_files.recon_crop(volume) == crop
    target = fastmri_files.cropped_target(volume)
    assert target.shape == (2, *crop)
    kspace, mask = _masked(volume.kspace)
    images = cs_tv.reconstruct(
        kspace * tf.cast(mask[:, None, None, :], tf.complex64), mask, crop_size=crop
    ).numpy()
    assert images.shape == (2, *crop)
    zero_filled = np.sqrt(
        (np.abs(synthetic.ifft2c(volume.kspace * mask.numpy()[:, None, None, :])) ** 2).sum(axis=1)
    )
    top, left = (zero_filled.shape[-2] - crop[0]) // 2, (zero_filled.shape[-1] - crop[1]) // 2
    zero_filled = zero_filled[:, top : top + crop[0], left : left + crop[1]]
    assert metrics.nmse(target, images) < 0.7 * metrics.nmse(target, zero_filled)


def test_a_file_with_fewer_rows_than_its_recon_size_is_refused(tmp_path):
    path = str(tmp_path / "file_short.h5")
    _brain_like_file(path, 180, recon=160, height=150)
    with pytest.raises(fastmri_files.FastMRIFileError, match="fewer rows than the crop 160 x 160"):
        fastmri_files.recon_crop(fastmri_files.read_volume(path))


def test_evaluation_pipeline_scores_each_files_recon_crop(tmp_path):
    # Brain-shaped files (recon 160 x 160; k-space 180 and 150 columns wide) read with a
    # 144 crop for the network: the scored images are at each file's recon crop.
    from tfmri.data import convert, pipeline

    raw = tmp_path / "raw" / "multicoil_val"
    raw.mkdir(parents=True)
    for name, width in (("file_a.h5", 180), ("file_b.h5", 150)):
        _brain_like_file(str(raw / name), width)
    records = str(tmp_path / "records")
    convert.convert(str(tmp_path / "raw"), records, convert.ConvertOptions(1, 1))
    options = pipeline.PipelineOptions(SPEC_8X, batch_size=2, crop_size=144, recon_crop=True)
    shapes = {}
    for inputs, _ in pipeline.make_dataset(records, "multicoil_val", options, training=False):
        name = inputs["volume"].numpy()[0].decode()
        volume = fastmri_files.read_volume(str(raw / name))
        index = int(inputs["slice_index"][0])
        mask = masks.fixed_volume_mask(SPEC_8X, name, volume.kspace.shape[-1])
        crop = fastmri_files.recon_crop(volume)
        zero_filled = np.sqrt(
            (np.abs(synthetic.ifft2c(volume.kspace[index] * mask)) ** 2).sum(axis=0)
        )
        top, left = (zero_filled.shape[0] - crop[0]) // 2, (zero_filled.shape[1] - crop[1]) // 2
        zero_filled = zero_filled[top : top + crop[0], left : left + crop[1]]
        np.testing.assert_allclose(
            inputs["zero_filled_image"][0], zero_filled, rtol=1e-4, atol=1e-5 * zero_filled.max()
        )
        np.testing.assert_array_equal(
            inputs["target_image"][0], fastmri_files.cropped_target(volume)[index]
        )
        assert inputs["zero_filled"].shape[1:] == (144, 144, 1)  # the network's crop
        shapes[name] = tuple(inputs["target_image"].shape[1:])
    assert shapes == {"file_a.h5": (160, 160), "file_b.h5": (150, 150)}


@pytest.mark.slow
def test_report_scores_zero_filled_and_cs_tv_on_files_narrower_than_the_crop(tmp_path):
    # No network, no --crop_size limit: zero-filled and CS-TV alone are scored on files of
    # any recon size (here narrower than the default 320 crop), each at its recon crop,
    # lambda chosen on another split of the same shapes.
    from tests.conftest import report_8x
    from tfmri.data import convert

    raw = tmp_path / "raw"
    for split, names in (
        ("multicoil_val", ("file_a.h5", "file_b.h5")),
        ("multicoil_train", ("file_t.h5",)),
    ):
        (raw / split).mkdir(parents=True)
        for name, width in zip(names, (180, 150)):
            _brain_like_file(str(raw / split / name), width)
    records = str(tmp_path / "records")
    convert.convert(str(raw), records, convert.ConvertOptions(1, 1))
    (setting,) = report_8x(
        tmp_path / "report",
        f"--data_dir={records}",
        "--val_split=multicoil_val",
        "--train_split=multicoil_train",
        "--methods=zero_filled,cs_tv",
        "--cs_lambda=auto",
        "--cs_iterations=30",
        "--cs_tune_volumes=1",
    )["results"]
    rows = {(row["volume"], row["method"]): row for row in setting["volumes"]}
    for name in ("file_a.h5", "file_b.h5"):
        volume = fastmri_files.read_volume(str(raw / "multicoil_val" / name))
        mask = masks.fixed_volume_mask(SPEC_8X, name, volume.kspace.shape[-1])
        crop = fastmri_files.recon_crop(volume)
        zero_filled = np.sqrt((np.abs(synthetic.ifft2c(volume.kspace * mask)) ** 2).sum(axis=1))
        zero_filled = fastmri_files.center_crop(zero_filled, *crop)
        target = fastmri_files.cropped_target(volume)
        expected = metrics.volume_metrics(target, zero_filled)
        for key in ("nmse", "psnr", "ssim"):
            np.testing.assert_allclose(rows[name, "zero_filled"][key], expected[key], rtol=1e-4)
        assert rows[name, "cs_tv"]["nmse"] < 0.7 * rows[name, "zero_filled"]["nmse"]


def test_maps_option_is_checked():
    assert cs_tv.CsTvOptions().maps == "espirit"
    with pytest.raises(ValueError, match="maps must be one of espirit, rss"):
        cs_tv.CsTvOptions(maps="sense")


def test_espirit_maps_beat_the_low_resolution_maps_multi_coil(multicoil_raw):
    """The knee phantom runs through the whole readout field of view, so the crop's rows
    cut it: the case ESPIRiT's maps must survive (tfmri.data.espirit.slice_maps)."""
    kspace, target = _slices(multicoil_raw, "multicoil_val", 2)
    kspace, mask = _masked(kspace)
    scores = {
        maps: metrics.volume_metrics(
            target, cs_tv.reconstruct(kspace, mask, cs_tv.CsTvOptions(maps=maps)).numpy()
        )
        for maps in cs_tv.MAPS
    }
    assert scores["espirit"]["nmse"] < 0.8 * scores["rss"]["nmse"], scores
    assert scores["espirit"]["ssim"] > scores["rss"]["ssim"], scores


def test_compiled_solver_equals_the_graph_with_the_same_maps(multicoil_raw):
    """Compiled, the data term runs on the sampled columns alone (_SampledOperator);
    in the graph, through the column FFTs (_Operator)."""
    kspace, _ = _slices(multicoil_raw, "multicoil_val", 1)
    kspace, mask = _masked(kspace)
    measured = cs_tv.measured_hybrid(kspace, mask, 320)
    options = cs_tv.CsTvOptions(0.005, 20)
    maps = cs_tv.estimate_maps(measured, mask, options.maps)
    compiled = cs_tv.reconstruct_hybrid_xla(measured, mask, options).numpy()
    plain = cs_tv.reconstruct_hybrid(measured, mask, options, maps=maps).numpy()
    np.testing.assert_allclose(compiled, plain, rtol=0, atol=1e-4 * plain.max())
