"""The last stage: fastMRI metrics, volume assembly, figures, evaluation and the comparison report."""
