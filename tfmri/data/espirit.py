"""ESPIRiT coil sensitivity maps (Uecker et al., MRM 2014) from hybrid data, in TensorFlow.

The maps are estimated from the measured calibration region only: the contiguous run of
sampled columns around the middle of k-space, and rows around the centre of the readout,
which is fully sampled. Shapes are hybrid, as in :mod:`tfmri.data.coils`: ``[C, h, W]``
(coils, the rows of the recon crop in image space, the phase-encoding columns in k-space).

The method, for one slice:

1. The calibration matrix ``A``: every ``kr x kc`` window of the calibration k-space, all
   coils, as one row. Its right singular vectors above ``threshold`` times the largest
   singular value span the signal space; ``P`` projects on it.
2. For an image pixel ``x``, ``G(x) = F(x)^H P F(x) / (kr kc)`` with ``F(x)`` the window
   offsets' Fourier factors: a ``C x C`` Hermitian matrix whose eigenvalues lie in [0, 1].
   Where the coil images are consistent with the calibration, ``conj(S(x))`` is an
   eigenvector of eigenvalue 1. ``G`` is the 2D DFT of ``P`` summed along its offset
   differences, nonzero on ``(2 kr - 1) x (2 kc - 1)`` differences alone, so it costs
   two small matrix products per coil pair, not one FFT per kernel.
3. The maps are the conjugated leading eigenvectors (power iteration from the
   low-resolution maps, already close inside the object), set to zero where the
   eigenvalue is below ``crop``, with coil 0's phase removed.

Narrow calibration regions (8x on narrow k-space leaves 7 columns) are handled by taking
more readout rows and, if that is not enough, narrower windows, so that ``A`` has at
least twice as many rows as columns. :func:`calibration` says what was used.
"""

import numpy as np
import tensorflow as tf

from tfmri.data import coils

KERNEL = 6  # window side, as BART's ecalib and sigpy's EspiritCalib use
CALIBRATION_ROWS = 24  # readout rows of the calibration region, at least
THRESHOLD = 0.02  # singular values kept, relative to the largest
CROP = 0.95  # eigenvalue below which a pixel's maps are zero
# Power iterations for the leading eigenvector, from the low-resolution maps (close to it
# inside the object). Against 30 from ones, the maps of the check set's tuning volumes moved
# by 2-5e-4 relative; where two eigenvalues lie near 1 (the knee phantom) neither count
# converges (docs/results.md#the-sampled-column-solver-and-faster-espirit).
ITERATIONS = 8
# Added to the start so that no pixel starts orthogonal to the answer (a zero start).
_TIE_BREAK = 1e-3
OVERDETERMINED = 2  # rows of A per column of A, at least


def _fft1c_rows(hybrid):
    """Centred orthonormal FFT along the rows (axis -2) of [..., h, W] data."""
    return tf.linalg.matrix_transpose(_fft1c(tf.linalg.matrix_transpose(hybrid)))


def _fft1c(x):
    length = tf.shape(x)[-1]
    shifted = tf.roll(x, shift=-(length // 2), axis=-1)
    kspace = tf.roll(tf.signal.fft(shifted), shift=length // 2, axis=-1)
    return kspace / tf.cast(tf.sqrt(tf.cast(length, tf.float32)), kspace.dtype)


def calibration(mask, num_coils, height, kernel=KERNEL, rows=CALIBRATION_ROWS):
    """The calibration region and window used for one slice.

    Args:
      mask: float32 [W], 1 where a column was sampled.
      num_coils: int32 scalar, C.
      height: int32 scalar, the rows h of the hybrid data.

    Returns:
      int32 [5]: first column, calibration columns n, calibration rows, window rows kr,
      window columns kc. ``kr = min(kernel, rows)``; ``kc`` is the widest window up to
      ``kernel`` with at least ``kc`` positions along the calibration columns for which
      the rows needed (at most ``height``) make ``A`` overdetermined.
    """
    centre = coils.sampled_center_run(mask)
    columns = tf.cast(tf.reduce_sum(centre), tf.int32)
    first = tf.cast(tf.argmax(centre), tf.int32)
    kr = tf.minimum(kernel, height)
    candidates = tf.range(1, kernel + 1)
    windows = tf.maximum(columns - candidates + 1, 1)
    # Rows of A = (calibration rows - kr + 1) * windows >= OVERDETERMINED * C * kr * kc.
    needed = (OVERDETERMINED * num_coils * kr * candidates + windows - 1) // windows + kr - 1
    # As many window positions along the columns as the window is wide: with fewer, the
    # columns constrain the signal space too little (7 columns, 6-wide windows: no maps).
    fits = (windows >= candidates) & (needed <= height)
    kc = tf.reduce_max(tf.where(fits, candidates, 1))
    chosen = tf.gather(needed, kc - 1)
    calibration_rows = tf.minimum(height, tf.maximum(rows, chosen))
    return tf.stack([first, columns, calibration_rows, kr, kc])


def _calibration_matrix(kspace, first, columns, calibration_rows, kr, kc):
    """complex64 [windows, C * kr * kc]: the windows of the calibration region of
    ``kspace`` [C, h, W], each vectorised in (coil, row offset, column offset) order."""
    height = tf.shape(kspace)[-2]
    top = height // 2 - calibration_rows // 2
    region = kspace[:, top : top + calibration_rows, first : first + columns]
    framed = tf.signal.frame(region, kr, 1, axis=-2)  # [C, nr, kr, n]
    framed = tf.signal.frame(framed, kc, 1, axis=-1)  # [C, nr, kr, nc, kc]
    framed = tf.transpose(framed, [1, 3, 0, 2, 4])  # [nr, nc, C, kr, kc]
    shape = tf.shape(framed)
    return tf.reshape(framed, [shape[0] * shape[1], -1])


def _signal_projection(matrix, threshold):
    """complex64 [N, N]: the projection on the right singular vectors of ``matrix``
    whose singular values exceed ``threshold`` times the largest."""
    singular, _, right = tf.linalg.svd(matrix)
    kept = tf.cast(singular > threshold * singular[0], right.dtype)
    return tf.matmul(right * kept[None, :], right, adjoint_b=True)


def _centred_factors(length, reach, rows):
    """complex64 [len(rows), 2 reach - 1]: exp(-i 2 pi (j - length / 2) d / length) for the
    output indices j of ``rows`` and the offset differences d = -(reach - 1)..reach - 1,
    the factors of an unnormalised centred DFT of data at the middle ``2 reach - 1``."""
    index = tf.cast(rows - length // 2, tf.float32)[:, None]
    delta = tf.cast(tf.range(-(reach - 1), reach), tf.float32)[None, :]
    angle = -2.0 * np.pi * index * delta / tf.cast(length, tf.float32)
    return tf.complex(tf.cos(angle), tf.sin(angle))


def _gram_images(projection, num_coils, kr, kc, height, width, rows):
    """complex64 [len(rows), W, C, C]: ``G(x)`` at the pixels of ``rows`` of the
    ``height x width`` image grid.

    ``G`` is the centred 2D DFT of ``P`` summed along its offset differences, which are
    nonzero on the middle ``(2 kr - 1) x (2 kc - 1)`` alone: the DFT is two products
    with its factors there, over the rows asked for only."""
    offsets = kr * kc
    pairs = tf.reshape(projection, [num_coils, offsets, num_coils, offsets])
    pairs = tf.reshape(tf.transpose(pairs, [1, 3, 0, 2]), [offsets * offsets, num_coils, num_coils])
    index = tf.range(offsets)
    row, column = index // kc, index % kc
    delta_row = row[:, None] - row[None, :]  # [O, O]: offset differences o - o'
    delta_column = column[:, None] - column[None, :]
    span = 2 * kc - 1
    segment = tf.reshape((delta_row + kr - 1) * span + delta_column + kc - 1, [-1])
    summed = tf.math.unsorted_segment_sum(pairs, segment, (2 * kr - 1) * span)  # [D, C, C]
    summed = tf.reshape(summed, [2 * kr - 1, span, num_coils * num_coils])
    along_columns = tf.einsum(
        "wb,abk->awk", _centred_factors(width, kc, tf.range(width)), summed
    )  # [2 kr - 1, W, C^2]
    gram = tf.einsum("ja,awk->jwk", _centred_factors(height, kr, rows), along_columns)
    gram = gram / tf.cast(offsets, gram.dtype)
    return tf.reshape(gram, [tf.size(rows), width, num_coils, num_coils])


def _leading_eigenvectors(gram, start, iterations):
    """(complex64 [h, W, C] unit eigenvectors, float32 [h, W] eigenvalues) of the
    largest eigenvalue of each Hermitian ``gram`` [h, W, C, C], by power iteration from
    ``start`` [h, W, C]."""

    def normalized(vector):
        norm = tf.sqrt(tf.reduce_sum(tf.abs(vector) ** 2, axis=-1, keepdims=True))
        return vector / tf.cast(tf.maximum(norm, 1e-30), vector.dtype)

    def step(i, vector):
        return i + 1, normalized(tf.linalg.matvec(gram, vector))

    _, vector = tf.while_loop(lambda i, _: i < iterations, step, (0, normalized(start)))
    value = tf.math.real(tf.reduce_sum(tf.math.conj(vector) * tf.linalg.matvec(gram, vector), -1))
    return vector, value


# Static shapes once the calibration is known: compiled, the iterations fuse.
_leading_eigenvectors_compiled = tf.function(_leading_eigenvectors, jit_compile=True)


def slice_maps(
    measured,
    mask,
    start=None,
    kernel=KERNEL,
    rows=CALIBRATION_ROWS,
    threshold=THRESHOLD,
    crop=CROP,
    iterations=ITERATIONS,
):
    """ESPIRiT maps of one slice.

    Args:
      measured: complex64 [C, h, W] measured hybrid data (zero where unsampled).
      mask: float32 [W].
      start: complex64 [C, h, W] maps close to the answer, from which the power
        iterations start (default: :func:`tfmri.data.coils.estimate_maps`' maps).

    Returns:
      (complex64 [C, h, W] maps, unit norm over coils where the leading eigenvalue is
      at least ``crop`` and zero elsewhere; float32 [h, W] the eigenvalues; int32 [5]
      the calibration, as :func:`calibration` gives it).
    """
    shape = tf.shape(measured)
    num_coils, height, width = shape[0], shape[1], shape[2]
    used = calibration(mask, num_coils, 2 * height, kernel, rows)
    first, columns, calibration_rows, kr, kc = tf.unstack(used)
    # The rows are the recon crop's, which can cut the object (a knee runs through the
    # whole readout field of view): on the crop's own periodic grid the maps would have
    # to jump where its last row wraps to its first. Zero rows above and below make the
    # data that of the cut object on a grid twice as tall, whose seam lies in the empty
    # rows; the maps are solved on that grid and its middle rows kept.
    top = height // 2
    padded = tf.pad(measured, [[0, 0], [top, height - top], [0, 0]])
    kspace = _fft1c_rows(padded)
    matrix = _calibration_matrix(kspace, first, columns, calibration_rows, kr, kc)
    projection = _signal_projection(matrix, threshold)
    gram = _gram_images(projection, num_coils, kr, kc, 2 * height, width, tf.range(height) + top)
    if start is None:
        start = coils.estimate_maps(measured[None], mask[None])[0]
    # conj(S) is the eigenvector; the low-resolution maps are close to S in the object.
    initial = tf.transpose(tf.math.conj(start), [1, 2, 0]) + _TIE_BREAK
    vector, value = _leading_eigenvectors_compiled(gram, initial, iterations)
    maps = tf.transpose(tf.math.conj(vector), [2, 0, 1])  # [C, h, W]
    reference = maps[0]
    phase = tf.math.conj(reference) / tf.cast(tf.maximum(tf.abs(reference), 1e-30), maps.dtype)
    maps = maps * phase[None] * tf.cast(value >= crop, maps.dtype)[None]
    return maps, value, used


def estimate_maps(measured, mask, start=None, **options):
    """complex64 [B, C, h, W] ESPIRiT maps of hybrid data [B, C, h, W] and masks [B, W],
    the power iterations from ``start`` [B, C, h, W] (default: the low-resolution maps)."""
    if start is None:
        start = coils.estimate_maps(measured, mask)
    return tf.map_fn(
        lambda example: slice_maps(example[0], example[1], example[2], **options)[0],
        (measured, mask, start),
        fn_output_signature=measured.dtype,
    )


def filled_maps(measured, mask, crop=CROP, **options):
    """complex64 [B, C, h, W]: ESPIRiT's maps where its eigenvalue reaches ``crop``, and
    :func:`tfmri.data.coils.estimate_maps`' low-resolution maps elsewhere.

    ESPIRiT's maps are zero outside the object, and so is the image solved with them;
    against fastMRI's multi-coil target, the RSS of the coil images, noise included, that
    empty background costs SSIM (docs/results.md#espirit-maps-in-cs-tv). The noise
    outside the object is seen through the low-resolution maps instead.

    Each pixel's ESPIRiT vector is turned to the phase of the low-resolution maps (its
    inner product with them made real and positive) rather than to coil 0's: the phase
    of a coil far from the pixel is noise, and the low-resolution maps carry the
    object's own phase, so the image solved with these maps is close to real and
    positive, and its phase does not jump at the seam between the two."""
    low = coils.estimate_maps(measured, mask)
    maps = estimate_maps(measured, mask, low, crop=crop, **options)
    inner = tf.reduce_sum(maps * tf.math.conj(low), axis=1, keepdims=True)
    turn = tf.math.conj(inner) / tf.cast(tf.maximum(tf.abs(inner), 1e-30), inner.dtype)
    kept = tf.reduce_sum(tf.abs(maps) ** 2, axis=1, keepdims=True) > 0
    return tf.where(kept, maps * turn, low)
