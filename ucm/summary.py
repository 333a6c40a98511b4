"""Size of UCM-Net: parameters and multiply-accumulates (MACs) for one image in inference mode.

    python -m ucm.summary [--json] [--size 256] [--checkpoint PATH]

MACs are counted by `torch.utils.flop_counter` (FLOPs / 2, over convolutions, linear layers and matrix
products) in eval mode, so the five training-only stage heads are not run and not counted. `params` counts
every parameter of the module, heads included (`params_heads` says how many those are);
`params_published_equivalent` adds the published code's unused DWConv vectors for comparison with its 47,436.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from ucm.checkpoint import load_float_model
from ucm.errors import run_command
from ucm.model import UCMNet, build_model


def count_macs(model: torch.nn.Module, size: int = 256) -> int:
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    model.train(was_training)
    return counter.get_total_flops() // 2


def summarize(model: UCMNet, size: int = 256) -> dict:
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model, size),
        "input": [1, 3, size, size],
        "params_heads": model.head_parameters(),
        "params_published_equivalent": sum(p.numel() for p in model.parameters())
        + model.config.count_unused_published_params,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ucm.summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--checkpoint", help="summarise this checkpoint's model (default: the default config)")
    args = ap.parse_args(argv)
    return run_command(lambda: _summary(args))


def _summary(args: argparse.Namespace) -> int:
    model = load_float_model(args.checkpoint)[0] if args.checkpoint else build_model()
    info = summarize(model, args.size)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"UCM-Net {tuple(model.config.channels)} at {args.size}x{args.size}")
        print(f"  params: {info['params']:,} (of which {info['params_heads']:,} in the training-only heads)")
        print(f"  params, published-code equivalent: {info['params_published_equivalent']:,}")
        print(f"  MACs (inference): {info['macs']:,} = {info['macs'] / 1e9:.4f} G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
