"""The fastMRI anchor of bench_pipeline.py: fastMRI's own training loader on the same files.

  python bench/fastmri_loader.py --split_dir=DIR [--passes=2]   (pip install -e ".[bench]")

fastMRI 0.3.0's ``SliceDataset`` with ``UnetDataTransform`` (random mask, centre
fraction 0.04, 8x, a fresh mask per slice) in a PyTorch ``DataLoader`` with 2 worker
processes, batch 8, shuffled: what fastMRI's U-Net training reads its data with. One
untimed pass starts the workers and warms the page cache; then ``--passes`` full
passes are timed. Prints one JSON line: slices per second.
"""

import argparse
import json
import time

from fastmri.data import SliceDataset
from fastmri.data.subsample import RandomMaskFunc
from fastmri.data.transforms import UnetDataTransform
from torch.utils.data import DataLoader


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split_dir", required=True, help="A folder of fastMRI .h5 files.")
    parser.add_argument("--challenge", default="singlecoil", choices=["singlecoil", "multicoil"])
    parser.add_argument("--passes", type=int, default=2, help="Timed passes over the files.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # use_seed=False: a fresh mask per slice and pass, as fastMRI's U-Net training reads.
    mask = RandomMaskFunc([0.04], [8])
    transform = UnetDataTransform(args.challenge, mask_func=mask, use_seed=False)
    dataset = SliceDataset(args.split_dir, challenge=args.challenge, transform=transform)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=True)

    def one_pass():
        return sum(len(batch.image) for batch in loader)

    one_pass()
    start, slices = time.monotonic(), 0
    for _ in range(args.passes):
        slices += one_pass()
    print(json.dumps({"slices_per_second": slices / (time.monotonic() - start), "slices": slices}))


if __name__ == "__main__":
    main()
