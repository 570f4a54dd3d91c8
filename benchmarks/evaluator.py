"""Training speed of the CLEVR-SV attribute evaluator: frames per second of one training step (forward, loss,
backward, AdamW), with the batch in PyTorch's default (contiguous) layout and in channels-last, the layout that
``sv_model.evaluation.fitting`` uses. The batch is random frames and targets: the speed does not depend on them.

    python benchmarks/evaluator.py [--widths 32 48] [--batch-size 64] [--steps 8] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sv_model.devices import resolve_device
from sv_model.evaluation import attribute_net
from sv_model.evaluation.clevr_objects import GRID, INPUT_SIZE

WARM_UP_STEPS = 2


def seconds_per_step(width: int, batch_size: int, steps: int, device: torch.device, channels_last: bool) -> float:
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    network = attribute_net.AttributeNet(width).to(device, memory_format=layout)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    pixels = torch.randint(0, 256, (batch_size, 3, INPUT_SIZE, INPUT_SIZE), device=device).float()
    pixels = pixels.contiguous(memory_format=layout)
    heat = torch.rand(batch_size, GRID, GRID, device=device)
    labels = torch.randint(-1, 2, (batch_size, 4, GRID, GRID), device=device)
    times = []
    for _ in range(WARM_UP_STEPS + steps):
        started = time.perf_counter()
        loss = attribute_net.loss(network, pixels, heat, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return float(np.median(times[WARM_UP_STEPS:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 48])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per setting (the median is printed)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print("width | layout | s/step | frames/s")
    for width in args.widths:
        for channels_last in (False, True):
            step = seconds_per_step(width, args.batch_size, args.steps, device, channels_last)
            layout = "channels-last" if channels_last else "contiguous"
            print(f"{width} | {layout} | {step:.3f} | {args.batch_size / step:.0f}")


if __name__ == "__main__":
    main()
