"""The PyTorch anchor of bench_train.py: a pix2pix reference training step.

  python bench/torch_pix2pix.py [--steps=20] [--threads=2]   (needs torch: pip install -e ".[bench]")

Written here from the published pix2pix architecture (Isola et al. 2017) and its
reference defaults, for timing only: unet_256 generator (8 stride-2 4 x 4 levels,
64 base filters capped at 512, batch norm, dropout 0.5 in the three decoder blocks
around the innermost, tanh output), 70 x 70 PatchGAN (three stride-2 and two stride-1
4 x 4 convolutions, batch norm) conditioned on the input, Adam 2e-4 / beta1 0.5,
vanilla GAN loss + 100 x L1, one 1-channel 256 x 256 pair per step: the setting
bench_train.py times tfmri in. Prints one JSON line: the median seconds per step.
"""

import argparse
import json
import resource
import statistics
import time

import torch
from torch import nn


def _filters(level, base=64):
    return min(base * 2**level, base * 8)


class UNet256(nn.Module):
    """unet_256: block 0 (outermost) to block 7 (innermost), skip concatenation."""

    def __init__(self, levels=8, dropout=0.5):
        super().__init__()
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for level in range(levels):
            inner = _filters(level)
            outer = 1 if level == 0 else _filters(level - 1)
            down = [] if level == 0 else [nn.LeakyReLU(0.2)]
            down.append(nn.Conv2d(outer, inner, 4, 2, 1, bias=level in (0, levels - 1)))
            if 0 < level < levels - 1:
                down.append(nn.BatchNorm2d(inner))
            self.downs.append(nn.Sequential(*down))
            incoming = inner if level == levels - 1 else 2 * inner
            up = [nn.ReLU(), nn.ConvTranspose2d(incoming, outer, 4, 2, 1, bias=level == 0)]
            if level == 0:
                up.append(nn.Tanh())
            else:
                up.append(nn.BatchNorm2d(outer))
                if levels - 4 <= level <= levels - 2:  # the three around the innermost
                    up.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*up))

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[-1](skips[-1])
        for level in reversed(range(len(self.ups) - 1)):
            x = self.ups[level](torch.cat([skips[level], x], dim=1))
        return x


def patch_gan(base=64):
    """70 x 70 PatchGAN on [input, image] concatenated (2 channels)."""
    layers = [nn.Conv2d(2, base, 4, 2, 1), nn.LeakyReLU(0.2)]
    channels = base
    for stride, width in ((2, base * 2), (2, base * 4), (1, base * 8)):
        layers += [nn.Conv2d(channels, width, 4, stride, 1, bias=False), nn.BatchNorm2d(width)]
        layers.append(nn.LeakyReLU(0.2))
        channels = width
    layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="Timed steps (after 3 warm-up).")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator, discriminator = UNet256(), patch_gan()
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    target = torch.randn(1, 1, 256, 256)
    zero_filled = target + torch.randn_like(target)

    def step():
        fake = generator(zero_filled)
        for parameter in discriminator.parameters():
            parameter.requires_grad_(True)
        d_optimizer.zero_grad()
        real_logits = discriminator(torch.cat([zero_filled, target], 1))
        fake_logits = discriminator(torch.cat([zero_filled, fake.detach()], 1))
        d_loss = 0.5 * (
            bce(real_logits, torch.ones_like(real_logits))
            + bce(fake_logits, torch.zeros_like(fake_logits))
        )
        d_loss.backward()
        d_optimizer.step()
        for parameter in discriminator.parameters():
            parameter.requires_grad_(False)
        g_optimizer.zero_grad()
        logits = discriminator(torch.cat([zero_filled, fake], 1))
        g_loss = bce(logits, torch.ones_like(logits)) + 100.0 * l1(fake, target)
        g_loss.backward()
        g_optimizer.step()
        return float(g_loss)

    for _ in range(3):
        step()
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.steps):
        start = time.monotonic()
        step()
        times.append(time.monotonic() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    summary = {"seconds_per_step": statistics.median(times), "fastest": min(times)}
    summary |= {"slowest": max(times), "faults_per_step": faults / args.steps, "batch": 1}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
