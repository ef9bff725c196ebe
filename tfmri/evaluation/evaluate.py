"""Evaluation of ``python -m tfmri.evaluate``: a trained model with the fastMRI
metrics, per volume, against zero-filled.

:func:`evaluate` reconstructs every slice of ``--val_split`` with the fixed per-volume masks, computes
NMSE, PSNR and SSIM per volume (fastMRI's conventions, in float64) for the model and
for the zero-filled input, and writes to ``--output_dir`` (default
``<model_dir>/eval``): ``metrics.csv`` (one row per volume and method),
``metrics.json`` (the same plus mean and standard deviation) and ``examples.png``
(zero-filled | reconstruction | target | 5 x error for the middle slice of the first
volumes). Prints the table.
"""

import csv
import io
import os

import numpy as np

from tfmri import fileio, run_config
from tfmri.data import fastmri_files, pipeline
from tfmri.errors import UserError
from tfmri.evaluation import metrics, visualize, volumes
from tfmri.progress import ProgressBar
from tfmri.training import checkpoints


def evaluate(run: run_config.RunConfig, checkpoint, output_dir, num_figure_volumes=4):
    """Evaluates ``run``'s checkpoint (default: its newest) on ``run.data.val_split``
    with ``run.mask``; writes the results; returns (rows, summary, checkpoint path)."""
    data = run.data
    _, entry, _ = pipeline.split_info(data.data_dir, data.val_split)  # before any work
    model, checkpoint = checkpoints.load_model(run.runtime.model_dir, checkpoint)
    options = pipeline.PipelineOptions(
        run.mask,
        batch_size=data.batch_size,
        crop_size=data.crop_size,
        data_consistency=model.config.data_consistency,
        recon_crop=True,  # scored at each file's recon crop, as fastMRI scores
    )
    dataset = pipeline.make_dataset(data.data_dir, data.val_split, options, training=False)
    # The method is what the checkpoint is, whatever --model says.
    label = model.config.method
    rows, examples = [], []
    bar = ProgressBar(entry.statistics.num_volumes, "volumes")
    reconstructed = volumes.reconstruct_volumes(volumes.model_predictor(model), dataset)
    with pipeline.naming_damaged_records(data.data_dir, data.val_split):
        for name, zero_filled, reconstruction, target in reconstructed:
            for method, image in (("zero_filled", zero_filled), (label, reconstruction)):
                rows.append(metrics.volume_row(name, method, target, image))
            bar.update()
            if len(examples) < num_figure_volumes:
                middle = len(target) // 2
                examples.append((zero_filled[middle], reconstruction[middle], target[middle]))
    bar.close()
    if not rows:
        raise UserError(f"--val_split={data.val_split}: no slices to evaluate")
    summary = metrics.summarize(rows)
    _write_results(run, checkpoint, rows, summary, examples, output_dir)
    return rows, summary, checkpoint


def _write_results(run, checkpoint, rows, summary, examples, output_dir):
    """metrics.csv, metrics.json and examples.png in ``output_dir``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["volume", "method", *metrics.NAMES])
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(os.path.join(output_dir, "metrics.csv"), buffer.getvalue())
    fileio.write_json(
        os.path.join(output_dir, "metrics.json"),
        {
            "checkpoint": checkpoint,
            "data_dir": run.data.data_dir,
            "split": run.data.val_split,
            "mask": run.mask.mask_type,
            "center_fractions": [f"{value:g}" for value in run.mask.center_fractions],
            "accelerations": [str(value) for value in run.mask.accelerations],
            "volumes": rows,
            "summary": summary,
        },
    )
    # The volumes' recon crops can differ: the figure shows their common centre.
    height = min(image.shape[-2] for example in examples for image in example)
    width = min(image.shape[-1] for example in examples for image in example)
    columns = zip(*examples)
    grid = visualize.comparison_grid(
        *(np.stack([fastmri_files.center_crop(i, height, width) for i in c]) for c in columns)
    )
    visualize.write_png(os.path.join(output_dir, "examples.png"), grid)
