"""``python -m core scaling``: multipliers, stage table, parameters and FLOPs of an EfficientNet.

Either compound scaling (``--phi`` with optional ``--alpha/--beta/--gamma``) or a released
variant (``--variant b0..b7``); ``--json`` prints one machine-readable object instead of text.
"""

from __future__ import annotations

import argparse
import json

from core import scaling
from core.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scaling`` command."""
    p = subparsers.add_parser(
        "scaling", help="compound-scaling calculator (parameters, FLOPs, stage table)",
        description="Show what EfficientNet compound scaling gives for phi, or a released variant.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--phi", type=float, help=f"compound coefficient ({scaling.PHI_RANGE[0]:g} "
                                                 f"to {scaling.PHI_RANGE[1]:g})")
    which.add_argument("--variant", type=str.lower, choices=list(scaling.OFFICIAL),
                       help="a released network, b0..b7")
    low, high = scaling.BASE_RANGE
    p.add_argument("--alpha", type=float, help=f"depth base, {low:g} to {high:g} (default {scaling.ALPHA})")
    p.add_argument("--beta", type=float, help=f"width base, {low:g} to {high:g} (default {scaling.BETA})")
    p.add_argument("--gamma", type=float, help=f"resolution base, {low:g} to {high:g} "
                                               f"(default {scaling.GAMMA})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print the scaled network; bad values raise :class:`CliError`."""
    bases = {k: getattr(args, k) for k in ("alpha", "beta", "gamma")}
    given = [f"--{k}" for k, v in bases.items() if v is not None]
    try:
        if args.variant:
            if given:
                raise CliError(f"{', '.join(given)} can only be used with --phi, "
                               "not with --variant.")
            net, mult = scaling.official_network(args.variant), None
        else:
            defaults = {"alpha": scaling.ALPHA, "beta": scaling.BETA, "gamma": scaling.GAMMA}
            mult = scaling.multipliers(args.phi, **{k: v if v is not None else defaults[k]
                                                    for k, v in bases.items()})
            net = scaling.network(mult.width, mult.depth, mult.resolution)
    except ValueError as exc:
        raise CliError(str(exc)) from None

    if args.json:
        print(json.dumps(net.to_dict()))
        return 0
    title = f"EfficientNet-{args.variant.upper()}" if args.variant else f"phi = {args.phi:g}"
    print(title)
    if mult:
        print(f"  constraint alpha*beta^2*gamma^2 = {mult.constraint:.4f}  "
              f"(FLOPs factor {mult.flops_factor:.3f} vs 2^phi = {mult.ideal_flops_factor:.3f})")
    print(f"  width x{net.width:.4f}   depth x{net.depth:.4f}   resolution {net.resolution}px")
    print(f"  parameters {net.params:,}   FLOPs {net.flops / 1e9:.3f} B multiply-adds")
    print()
    print(f"  {'stage':>5}  {'operator':<24}{'resolution':>12}{'channels':>10}{'layers':>8}"
          f"{'params':>12}{'MFLOPs':>10}")
    for r in net.stages:
        print(f"  {r.stage:>5}  {r.operator:<24}{f'{r.resolution}x{r.resolution}':>12}"
              f"{r.channels:>10}{r.layers:>8}{r.params:>12,}{r.flops / 1e6:>10.1f}")
    return 0
