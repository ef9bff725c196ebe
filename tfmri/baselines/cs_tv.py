"""Compressed sensing with total variation: the classical baseline, batched in TensorFlow.

For each slice it solves::

    minimise over the complex image x:   ||M F S x - y||^2 + lambda * TV(x)

with ``M`` the column mask, ``F`` the centred orthonormal FFT, ``S`` the coil
sensitivity maps (ones for single-coil), ``y`` the measured k-space and ``TV`` the
isotropic total variation (the l2 norm over the two finite differences of the
complex image, summed over pixels).

The problem is solved in hybrid space. The readout (row) direction is fully sampled,
so ``F = F_cols F_rows`` and, ``F_rows`` being unitary and commuting with the column
mask, the data term equals ``||M F_cols S x - y_h||^2`` with ``y_h`` the measured data
after the inverse readout transform (:func:`tfmri.data.transforms.measured_rows`).
Rows are independent in the data term, so the solver keeps only the rows of the recon
crop (320 of 640): the one change from the full field of view is that TV no longer
links the first and last kept rows to the rows outside the crop, which the metrics
never see. Only 1D FFTs over the columns are needed.

The method is the primal-dual algorithm of Chambolle and Pock (2011) with
``K = [A; grad]``, ``A = M F_cols S``, ``f = 0``: it converges for any
``tau * sigma * ||K||^2 <= 1``; with maps normalised to sum(|S|^2) <= 1 per pixel,
``||A|| <= 1`` and ``||grad||^2 <= 8``, so ``||K||^2 <= 9``; multi-coil, the two duals
take steps of their own, ``tau * (sigma_data + 8 sigma_tv) <= 1`` (Pock and Chambolle's
diagonal preconditioning, 2011). The objective is not monotone along the iterations;
the method guarantees convergence to the minimum.

Multi-coil, compiled, the dual of the data term is kept on the sampled columns alone
(it is zero elsewhere), and ``A`` is a product with the DFT rows of those columns
rather than a column FFT: at 8x about an eighth of the columns, at 4x a quarter.

Multi-coil sensitivity maps come from the measured calibration region only (the
contiguous run of sampled columns around the middle), by ``CsTvOptions.maps``:
``espirit`` (the default), ESPIRiT's maps inside the object and the low-resolution maps
outside it (:func:`tfmri.data.espirit.filled_maps`); ``rss``, the low-resolution coil
images divided by their root sum of squares (:func:`tfmri.data.coils.estimate_maps`).
ESPIRiT's SVD has no XLA kernel, so the maps are estimated in a graph of their own and
passed to the compiled solver.

The data are scaled per slice so that the zero-filled image peaks at 1 before solving
(and scaled back after), so that ``lambda`` does not depend on the scanner's units.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfmri.data import coils as coil_maps
from tfmri.data import espirit, pipeline, transforms

# Chosen on the synthetic validation split (bench/bench_cs.py --sweep;
# docs/results.md#cs-tv-against-bart): the fixed lambda of --cs_lambda=<number>;
# --cs_lambda=auto chooses from LAMBDA_GRID instead.
DEFAULT_LAMBDA = 0.005
AUTO = "auto"
NMSE_SLACK = 1.1  # choose_lambda: lambdas within 10 % of the best NMSE compete on SSIM
# Candidates of choose_lambda: a factor of about 2 apart, 20 x either side of the default.
LAMBDA_GRID = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
DEFAULT_ITERATIONS = 100
TUNE_SLICES = 2  # middle slices per volume on which --cs_lambda=auto scores each lambda
TUNE_VOLUMES = 4  # volumes of the tuning split it reads, by default
# Single-coil, tau / sigma = STEP_BALANCE / lambda (tau * sigma = 1 / ||K||^2): the balance that
# converged fastest over lambda 0.003 to 0.01 on the synthetic validation slices.
STEP_BALANCE = 0.64
# Multi-coil, the steps of the two duals apart (Pock and Chambolle's preconditioning):
# tau = MC_TAU_LAMBDA / lambda, the data dual's step DATA_SHARE / tau and TV's
# (1 - DATA_SHARE) / (8 tau), so that tau * (sigma_data ||A||^2 + sigma_tv ||grad||^2) <= 1.
# Chosen on the synthetic multi-coil training split at 8x, lambda 0.0005-0.005: after 60
# iterations 25-35 % closer to the solution than one step for both (docs/results.md).
MC_TAU_LAMBDA = 0.015
DATA_SHARE = 0.5
# Multi-coil maps: ESPIRiT's (with the low-resolution maps outside the object), or the
# low-resolution maps alone (docs/results.md#espirit-maps-in-cs-tv).
MAPS = ("espirit", "rss")
DEFAULT_MAPS = "espirit"
# Multi-coil, compiled: the sampled columns are padded to a multiple of this, so that
# volumes whose random masks sample a few columns more or less share one compilation.
COLUMN_STEP = 8


@dataclasses.dataclass(frozen=True)
class CsTvOptions:
    regularization: float = DEFAULT_LAMBDA
    iterations: int = DEFAULT_ITERATIONS
    maps: str = DEFAULT_MAPS  # multi-coil maps, of MAPS

    def __post_init__(self):
        if not self.regularization > 0:
            raise ValueError(f"CS-TV lambda must be > 0, got {self.regularization}")
        if self.iterations < 1:
            raise ValueError(f"CS-TV iterations must be >= 1, got {self.iterations}")
        if self.maps not in MAPS:
            raise ValueError(f"CS-TV maps must be one of {', '.join(MAPS)}, got {self.maps!r}")


def estimate_maps(measured, mask, method=DEFAULT_MAPS):
    """complex64 [B, C, h, W] maps of multi-coil hybrid data by ``method`` (of MAPS);
    None for single-coil data [B, h, W]."""
    if measured.shape.rank != 4:
        return None
    if method == "espirit":
        return espirit.filled_maps(measured, mask)
    return coil_maps.estimate_maps(measured, mask)


# A graph, not XLA: ESPIRiT's SVD and calibration sizes are not compilable.
_maps_graph = tf.function(estimate_maps)


def parse_lambda(text):
    """``--cs_lambda``: AUTO, or a positive number; raises ValueError naming the choices."""
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"CS-TV lambda must be 'auto' or a number > 0, got {text!r}")
    return value


def gradient(x):
    """Forward differences with a zero last difference: complex64 [..., h, w] -> [..., 2, h, w]."""
    down = tf.concat([x[..., 1:, :] - x[..., :-1, :], tf.zeros_like(x[..., :1, :])], axis=-2)
    right = tf.concat([x[..., :, 1:] - x[..., :, :-1], tf.zeros_like(x[..., :, :1])], axis=-1)
    return tf.stack([down, right], axis=-3)


def gradient_adjoint(p):
    """The adjoint of :func:`gradient` (minus the divergence): [..., 2, h, w] -> [..., h, w]."""
    down, right = p[..., 0, :, :], p[..., 1, :, :]
    zeros_row = tf.zeros_like(down[..., :1, :])
    zeros_col = tf.zeros_like(right[..., :, :1])
    # (D^T q)_i = q_{i-1} - q_i, with q_{-1} = 0 and the last q (always 0) not read.
    rows = tf.concat([zeros_row, down[..., :-1, :]], axis=-2) - tf.concat(
        [down[..., :-1, :], zeros_row], axis=-2
    )
    cols = tf.concat([zeros_col, right[..., :, :-1]], axis=-1) - tf.concat(
        [right[..., :, :-1], zeros_col], axis=-1
    )
    return rows + cols


def total_variation(x):
    """Isotropic TV per slice: complex64 [B, h, w] -> float32 [B]."""
    magnitude = tf.sqrt(tf.reduce_sum(tf.abs(gradient(x)) ** 2, axis=-3))
    return tf.reduce_sum(magnitude, axis=[-2, -1])


class _Operator:
    """A = M F_cols S and its adjoint, for maps [B, C, h, W] (None: single-coil)."""

    def __init__(self, mask, maps):
        self.mask = tf.cast(mask[:, None, None, :], tf.complex64)  # [B, 1, 1, W]
        self.maps = maps

    def forward(self, x):  # [B, h, W] -> [B, C, h, W]
        coils = x[:, None] if self.maps is None else coil_maps.expand(x, self.maps)
        return self.mask * transforms.image_to_columns(coils)

    def adjoint(self, q):  # [B, C, h, W] -> [B, h, W]
        coils = transforms.columns_to_image(self.mask * q)
        if self.maps is None:
            return coils[:, 0]
        return coil_maps.combine(coils, self.maps)


class _SampledOperator:
    """A = M F_cols S on the sampled columns alone, as products with the DFT rows of the
    ``columns`` columns of largest mask per slice (padding columns, of mask 0, are rows of
    zeros): the dual of the data term is zero on unsampled columns (docs/design.md).

    At 8x (48 of 368 columns) one solve took 0.6 of the time of :class:`_Operator`'s
    column FFTs (docs/results.md#the-sampled-column-solver-and-faster-espirit); the
    data it meets are :meth:`sample` of the measured hybrid data."""

    def __init__(self, mask, maps, columns):
        width = mask.shape[-1]
        # Sampled columns first, in order (a stable sort of 1 - mask), then padding.
        self.index = tf.argsort(1.0 - mask, axis=-1, stable=True)[:, :columns]  # [B, n]
        kept = tf.cast(tf.gather(mask, self.index, batch_dims=1), tf.complex64)  # [B, n]
        dft = transforms.image_to_columns(tf.eye(width, dtype=tf.complex64))  # [W, W]
        rows = tf.gather(tf.transpose(dft), self.index) * kept[:, :, None]  # [B, n, W]
        # Complex products as real ones of twice the size (faster on CPU): [re, im] of q
        # times R = [[Re D, -Im D], [Im D, Re D]] is [re, im] of q conj(D), the adjoint;
        # [re, im] of x times R^T is [re, im] of x D^T, the forward product.
        real, imag = tf.math.real(rows), tf.math.imag(rows)
        self.adjoint_matrix = tf.concat(
            [tf.concat([real, -imag], axis=2), tf.concat([imag, real], axis=2)], axis=1
        )  # [B, 2n, 2W]
        self.forward_matrix = tf.transpose(self.adjoint_matrix, [0, 2, 1])  # [B, 2W, 2n]
        self.maps = maps

    def sample(self, hybrid):  # [B, C, h, W] -> [B, C, h, n]
        return tf.gather(hybrid, self.index, axis=-1, batch_dims=1)

    def forward(self, x):  # [B, h, W] -> [B, C, h, n]
        coils = coil_maps.expand(x, self.maps)
        shape = tf.shape(coils)
        flat = tf.reshape(coils, [shape[0], -1, shape[-1]])
        sampled = _complex_product(flat, self.forward_matrix)
        return tf.reshape(sampled, tf.concat([shape[:-1], [-1]], axis=0))

    def adjoint(self, q):  # [B, C, h, n] -> [B, h, W]
        shape = tf.shape(q)
        flat = tf.reshape(q, [shape[0], -1, shape[-1]])
        coils = _complex_product(flat, self.adjoint_matrix)
        coils = tf.reshape(coils, tf.concat([shape[:-1], [-1]], axis=0))
        return coil_maps.combine(coils, self.maps)


def _complex_product(x, matrix):
    """complex64 [B, N, m]: x [B, N, k] times the complex matrix whose real form is
    ``matrix`` [B, 2k, 2m] (see :class:`_SampledOperator`)."""
    product = tf.matmul(tf.concat([tf.math.real(x), tf.math.imag(x)], axis=-1), matrix)
    half = matrix.shape[-1] // 2
    return tf.complex(product[..., :half], product[..., half:])


def objective(operator, x, measured, regularization):
    """float32 [B]: ||A x - y||^2 + lambda TV(x) per slice."""
    residual = tf.abs(operator.forward(x) - measured) ** 2
    return tf.reduce_sum(residual, axis=[1, 2, 3]) + regularization * total_variation(x)


def _project(p, regularization):
    """Projects the dual of the TV term onto {|p_ij| <= lambda} (per pixel, over both differences)."""
    norm = tf.sqrt(tf.reduce_sum(tf.abs(p) ** 2, axis=-3, keepdims=True))
    return p / tf.cast(tf.maximum(1.0, norm / regularization), p.dtype)


def _steps(lam, single):
    """float32 (tau, sigma of the TV dual, sigma of the data dual) for lambda ``lam``."""
    if single:  # K = grad, ||K||^2 <= 8; the data term by its exact proximal map
        tau = tf.sqrt(STEP_BALANCE / lam) / 8.0**0.5
        return tau, 1.0 / (8.0 * tau), 0.0
    tau = MC_TAU_LAMBDA / lam
    return tau, (1.0 - DATA_SHARE) / (8.0 * tau), DATA_SHARE / tau


def _solve(operator, measured, regularization, iterations, record):
    """Chambolle-Pock iterations from the zero-filled image; returns x [B, h, W] (and history).

    Single-coil: ``K = grad`` and the data term is handled by its proximal map, exact in
    hybrid space (``F_cols`` unitary, the mask diagonal): one FFT pair per iteration.
    Multi-coil: ``K = [A; grad]`` with the data term's conjugate in the dual, each dual
    with a step of its own (:func:`_steps`); with :class:`_SampledOperator`, the data
    dual lives on the sampled columns alone.
    """
    single = operator.maps is None
    lam = tf.cast(regularization, tf.float32)  # a Python float or a tensor (one trace for all)
    tau, sigma_tv, sigma_data = (tf.cast(step, tf.complex64) for step in _steps(lam, single))
    x = operator.adjoint(measured)

    def data_prox(v):  # argmin_x ||x - v||^2 / (2 tau) + ||M F x - y||^2, single-coil
        columns = transforms.image_to_columns(v)
        step = 2.0 * tau
        columns = (columns + step * measured[:, 0]) / (1.0 + step * operator.mask[:, 0])
        return transforms.columns_to_image(columns)

    def step(i, x, x_bar, q, p, history):
        p = _project(p + sigma_tv * gradient(x_bar), lam)
        if single:
            x_new = data_prox(x - tau * gradient_adjoint(p))
        else:
            q = (q + sigma_data * (operator.forward(x_bar) - measured)) / (1.0 + sigma_data / 2.0)
            x_new = x - tau * (operator.adjoint(q) + gradient_adjoint(p))
        if record:
            history = history.write(i, objective(operator, x_new, measured, lam))
        return i + 1, x_new, 2.0 * x_new - x, q, p, history

    state = (
        tf.constant(0),
        x,
        x,
        tf.zeros_like(measured[:, :1]) if single else tf.zeros_like(measured),
        tf.zeros_like(gradient(x)),
        tf.TensorArray(tf.float32, size=iterations if record else 0),
    )
    _, x, _, _, _, history = tf.while_loop(
        lambda i, *_: i < iterations, step, state, parallel_iterations=1
    )
    return x, (tf.transpose(history.stack()) if record else None)


def reconstruct_hybrid(
    measured, mask, options=CsTvOptions(), crop_size=320, record=False, maps=None
):
    """CS-TV magnitude images from measured hybrid data.

    Args:
      measured: complex64 [B, h, W] (single-coil) or [B, C, h, W] (multi-coil), the
        measured hybrid data of the ``h`` rows kept
        (:func:`tfmri.data.transforms.measured_rows`), zero where unsampled.
      mask: float32 [B, W], 1 where a column was sampled.
      options: lambda and iterations.
      crop_size: the output's width (its height is ``h``).
      record: also return the objective after every iteration.
      maps: multi-coil, complex64 [B, C, h, W] maps; None: estimated by ``options.maps``.

    Returns:
      float32 [B, h, crop_size] magnitude, in the units of ``measured``; with
      ``record``, also float32 [B, iterations] objective values (of the scaled problem).
    """
    if maps is None:
        maps = estimate_maps(measured, mask, options.maps)
    return _reconstruct(
        measured, mask, options.regularization, options.iterations, crop_size, record, maps
    )


def _reconstruct(
    measured, mask, regularization, iterations, crop_size, record=False, maps=None, columns=None
):
    """:func:`reconstruct_hybrid` with lambda a float or a float32 scalar tensor;
    multi-coil, ``columns`` (a Python int, at least every slice's sampled columns) runs
    the data term on the sampled columns alone (:class:`_SampledOperator`)."""
    x, history = _complex_solution(
        measured, mask, regularization, iterations, maps, record, columns
    )
    image = tf.abs(transforms.crop_width(x, crop_size))
    return (image, history) if record else image


def complex_image(measured, mask, regularization, iterations, maps=None):
    """complex64 [B, h, W]: the CS-TV solution, every column, in the units of ``measured``.

    ``measured`` and ``mask`` as :func:`reconstruct_hybrid` takes them; multi-coil, the
    image is the one combined with ``maps`` [B, C, h, W] (estimated from the fully
    sampled centre when None). ``regularization`` a float or a float32 scalar tensor.
    """
    return _complex_solution(measured, mask, regularization, iterations, maps)[0]


def _complex_solution(measured, mask, regularization, iterations, maps, record=False, columns=None):
    multicoil = measured.shape.rank == 4
    coil_data = measured if multicoil else measured[:, None]
    if multicoil and maps is None:
        maps = coil_maps.estimate_maps(coil_data, mask)
    if multicoil and columns is not None:
        operator = _SampledOperator(mask, maps, columns)
        coil_data = operator.sample(coil_data)
    else:
        operator = _Operator(mask, maps if multicoil else None)
    zero_filled = tf.abs(operator.adjoint(coil_data))
    scale = tf.maximum(tf.reduce_max(zero_filled, axis=[1, 2]), 1e-30)  # [B]
    scaled = coil_data / tf.cast(scale[:, None, None, None], coil_data.dtype)
    x, history = _solve(operator, scaled, regularization, iterations, record)
    return x * tf.cast(scale[:, None, None], x.dtype), history


def measured_hybrid(kspace, mask, crop_size):
    """Per slice :func:`tfmri.data.transforms.measured_rows`: [B, (C,) H, W] -> [B, (C,) crop, W]."""
    return tf.map_fn(
        lambda args: transforms.measured_rows(args[0], args[1], crop_size),
        (kspace, mask),
        fn_output_signature=kspace.dtype,
    )


# The measured rows gather a data-dependent number of columns, which XLA cannot
# compile; the solver has static shapes and runs faster compiled
# (docs/results.md#figures-behind-design-choices).
_measured_graph = tf.function(measured_hybrid)
# The solver compiled with XLA, lambda a tensor: one compilation per shape serves a
# whole lambda grid (`record` unsupported).
_reconstruct_any_lambda = tf.function(_reconstruct, jit_compile=True)


def reconstruct_hybrid_xla(measured, mask, options=CsTvOptions(), crop_size=320):
    """:func:`reconstruct_hybrid`, the maps estimated in a graph and the solver compiled
    with XLA (once per shape, iterations and crop)."""
    maps = _maps_graph(measured, mask, options.maps)
    regularization = tf.constant(options.regularization, tf.float32)
    return _reconstruct_any_lambda(
        measured,
        mask,
        regularization,
        options.iterations,
        crop_size,
        False,
        maps,
        sampled_columns(measured, mask),
    )


def sampled_columns(measured, mask):
    """The ``columns`` of :func:`_reconstruct` for multi-coil data with an eager mask: the
    most columns any slice samples, rounded up to COLUMN_STEP (one XLA compilation per
    value); None otherwise (the column FFTs of :class:`_Operator`)."""
    if measured.shape.rank != 4 or not tf.executing_eagerly():
        return None
    most = int(tf.reduce_max(tf.reduce_sum(tf.cast(mask > 0, tf.int32), axis=-1)))
    return column_bucket(most, int(mask.shape[-1]))


def column_bucket(count, width):
    """``count`` sampled columns of ``width`` rounded up to COLUMN_STEP (at most ``width``)."""
    return min(-(-count // COLUMN_STEP) * COLUMN_STEP, width)


def reconstruct(kspace, mask, options=CsTvOptions(), crop_size=320):
    """CS-TV from undersampled k-space, cropped like the fastMRI targets.

    Runs the solver compiled with XLA (compiled once per k-space shape and options).

    Args:
      kspace: complex64 [B, H, W] (single-coil) or [B, C, H, W] (multi-coil).
      mask: float32 [B, W], 1 where a column is sampled (unsampled columns are ignored).
      options: lambda and iterations.
      crop_size: side of the square output, or (height, width) of the output (a file's
        :func:`tfmri.data.fastmri_files.recon_crop`).

    Returns:
      float32 [B, height, width].
    """
    height, width = (crop_size, crop_size) if np.ndim(crop_size) == 0 else crop_size
    kspace = tf.convert_to_tensor(kspace, tf.complex64)
    mask = tf.convert_to_tensor(mask, tf.float32)
    measured = _measured_graph(kspace, mask, height)
    return reconstruct_hybrid_xla(measured, mask, options, width)


def choose_lambda(
    batches, iterations=DEFAULT_ITERATIONS, crop_size=None, grid=LAMBDA_GRID, maps=DEFAULT_MAPS
):
    """The lambda of ``grid`` with the best SSIM of those within NMSE_SLACK of the best NMSE.

    ``--cs_lambda=auto``: the weight of TV against the data depends on the noise and the
    content of the scans, so it is chosen on a few slices of the user's own data (a
    split other than the one evaluated), at each acceleration, rather than fixed once on
    the phantom. fastMRI reports both NMSE and SSIM, and on noisy data they pull apart:
    the target keeps its noise, so SSIM alone can prefer a lambda that keeps the noise
    and costs a third more NMSE; hence SSIM among the lambdas close to the best NMSE.

    Args:
      batches: [(measured complex64 [B, h, W] or [B, C, h, W], mask float32 [B, W],
        target float32 [B, h, w])], one group of slices of a volume each (scored as a
        volume, by the fastMRI metrics).
      iterations: CS-TV iterations, as the reconstructions that follow will run.
      crop_size: the output's width (default: each group's target width ``w``).
      grid: candidate lambdas.
      maps: the multi-coil maps the reconstructions will use, of MAPS.

    Returns:
      (chosen lambda, {lambda: {"nmse": mean, "ssim": mean} over the groups}).
    """
    from tfmri.evaluation import metrics

    if not batches:
        raise ValueError("choose_lambda needs at least one group of slices")
    scores = {}
    # The maps and the sampled columns depend on the data alone: once per group, not per lambda.
    estimated = [
        (_maps_graph(measured, mask, maps), sampled_columns(measured, mask))
        for measured, mask, _ in batches
    ]
    for regularization in grid:
        values = []
        for (measured, mask, target), (group_maps, columns) in zip(batches, estimated):
            width = crop_size or int(np.shape(target)[-1])
            images = _reconstruct_any_lambda(
                measured,
                mask,
                tf.constant(regularization, tf.float32),
                iterations,
                width,
                False,
                group_maps,
                columns,
            )
            target, images = np.asarray(target), np.asarray(images)
            values.append((metrics.nmse(target, images), metrics.ssim(target, images)))
        nmse, ssim = np.mean(values, axis=0)
        scores[regularization] = {"nmse": float(nmse), "ssim": float(ssim)}
    best_nmse = min(score["nmse"] for score in scores.values())
    close = [lam for lam, score in scores.items() if score["nmse"] <= best_nmse * NMSE_SLACK]
    return max(close, key=lambda lam: scores[lam]["ssim"]), scores


def _per_example(values, like):
    """``values`` [B] reshaped to broadcast against ``like`` [B, ...]."""
    return tf.reshape(values, [-1] + [1] * (like.shape.rank - 1))


def tuning_slices(data_dir, split, spec, volumes=TUNE_VOLUMES):
    """[(measured, mask, target)] for :func:`choose_lambda`: the middle TUNE_SLICES slices
    of each of the first ``volumes`` volumes of ``split`` (TFRecords in ``data_dir``),
    masked with ``spec`` (a :class:`tfmri.data.masks.MaskSpec`) as evaluation masks them,
    at each file's recon crop."""
    options = pipeline.PipelineOptions(
        spec, batch_size=1, measured=True, recon_crop=True, network_input=False
    )
    dataset = pipeline.make_dataset(data_dir, split, options, training=False)
    slices_of = {}
    for inputs, _ in dataset:
        name = inputs["volume"].numpy()[0].decode()
        if name not in slices_of and len(slices_of) == volumes:
            break
        slices_of.setdefault(name, []).append(inputs)
    groups = []
    for slices in slices_of.values():
        start = max(len(slices) // 2 - TUNE_SLICES // 2, 0)
        chosen = slices[start : start + TUNE_SLICES]
        # The measured data back in the file's units, those of the target.
        measured = [
            inputs["measured"]
            * tf.cast(_per_example(inputs["scale"], inputs["measured"]), tf.complex64)
            for inputs in chosen
        ]
        groups.append(
            (
                tf.concat(measured, axis=0),
                tf.concat([inputs["mask"] for inputs in chosen], axis=0),
                tf.concat([inputs["target_image"] for inputs in chosen], axis=0),
            )
        )
    return groups


def choose_on_split(
    data_dir, split, spec, volumes=TUNE_VOLUMES, iterations=DEFAULT_ITERATIONS, maps=DEFAULT_MAPS
):
    """:func:`choose_lambda` on :func:`tuning_slices` of ``split``: (lambda, scores)."""
    return choose_lambda(tuning_slices(data_dir, split, spec, volumes), iterations, maps=maps)


def describe_choice(scores):
    """How the lambda was chosen, and every candidate's mean NMSE / SSIM, in one line."""
    listed = ", ".join(
        f"{float(lam):g}: {s['nmse']:.4f}/{s['ssim']:.4f}" for lam, s in scores.items()
    )
    return (
        f"the best SSIM of the lambdas within {NMSE_SLACK - 1:.0%} of the best NMSE on the "
        f"tuning slices; (lambda: NMSE/SSIM) {listed}"
    )
