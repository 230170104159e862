"""``python -m core scaling``: the compound-scaling calculator, a measured-cost sweep and a search.

- ``scaling --phi PHI [--alpha A --beta B --gamma G]`` or ``scaling --variant bN``: multipliers,
  stage table, parameters and FLOPs (a released variant also gets the φ its coefficients imply);
- ``scaling sweep``: forward passes timed over B0–B3 (or several φ) on this machine;
- ``scaling search --data ... --budget-s N``: the paper's α, β, γ search at small scale.

``--json`` prints one machine-readable object instead of text. The sweep and the search run as
background jobs watched from the terminal (:mod:`core.cli.watch`): Ctrl-C stops them and keeps
what was measured.
"""

from __future__ import annotations

import argparse
import json

from core.cli.watch import run_job
from core.models import scaling
from core.platform.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scaling`` command and its ``sweep`` and ``search`` subcommands."""
    p = subparsers.add_parser(
        "scaling",
        help="compound scaling: calculator, measured cost (sweep), α/β/γ search",
        description="Show what EfficientNet compound scaling gives for phi, or a released variant "
        "(with the phi its coefficients imply). Subcommands: 'sweep' times forward "
        "passes on this machine, 'search' runs the paper's alpha/beta/gamma search "
        "on a dataset within a time budget.",
    )
    which = p.add_mutually_exclusive_group()  # required unless a subcommand is given (run checks)
    low, high = scaling.PHI_RANGE
    which.add_argument(
        "--phi",
        type=float,
        help=f"compound coefficient ({low:g} to {high:g}; negative: smaller than B0)",
    )
    which.add_argument(
        "--variant",
        type=str.lower,
        choices=list(scaling.OFFICIAL),
        help="a released network, b0..b7",
    )
    _add_bases(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)

    sub = p.add_subparsers(dest="scaling_command", metavar="{sweep,search}")
    _register_sweep(sub)
    _register_search(sub)


def _add_bases(p: argparse.ArgumentParser) -> None:
    low, high = scaling.BASE_RANGE
    p.add_argument(
        "--alpha", type=float, help=f"depth base, {low:g} to {high:g} (default {scaling.ALPHA})"
    )
    p.add_argument(
        "--beta", type=float, help=f"width base, {low:g} to {high:g} (default {scaling.BETA})"
    )
    p.add_argument(
        "--gamma",
        type=float,
        help=f"resolution base, {low:g} to {high:g} (default {scaling.GAMMA})",
    )


def _register_sweep(sub) -> None:
    from core.experiments import sweep  # per-command lazy import (see core.cli)

    p = sub.add_parser(
        "sweep",
        help="time forward passes over B0–B3 or several phi on this machine",
        description="Build each network with random weights and time its forward pass at each "
        "batch size; report milliseconds per image next to FLOPs and parameters, "
        "and the device. Networks left when the budget runs out are skipped.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--variants",
        nargs="+",
        type=str.lower,
        choices=list(scaling.OFFICIAL),
        metavar="bN",
        help=f"released networks (default {' '.join(sweep.DEFAULT_VARIANTS)})",
    )
    which.add_argument(
        "--phis",
        nargs="+",
        type=float,
        metavar="PHI",
        help="formula networks for these phi (with --alpha/--beta/--gamma)",
    )
    _add_bases(p)
    p.add_argument(
        "--base-resolution",
        type=int,
        help=f"base resolution for --phis (default {scaling.BASE_RESOLUTION})",
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        metavar="N",
        default=list(sweep.DEFAULT_BATCH_SIZES),
        help=f"batch sizes to time (default {' '.join(map(str, sweep.DEFAULT_BATCH_SIZES))})",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=sweep.DEFAULT_BUDGET_S,
        help=f"stop starting new networks after this many seconds "
        f"(default {sweep.DEFAULT_BUDGET_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_sweep)


def _register_search(sub) -> None:
    from core.experiments import search  # per-command lazy import (see core.cli)

    d = search.DEFAULTS
    p = sub.add_parser(
        "search",
        help="search alpha, beta, gamma under alpha*beta^2*gamma^2 ~ 2 on a dataset",
        description="The paper's method at small scale: candidates on the constraint surface at "
        "phi = 1, each trained briefly on a subset within a time budget. Width-1 "
        "candidates start from B0's ImageNet weights (official if available, else "
        "the offline Lite0), the others from scratch; the best and the worst are "
        "repeated with another seed to show the noise.",
    )
    p.add_argument("--data", default="cifar10", help="'cifar10', a dataset name or an image folder")
    p.add_argument(
        "--budget-s",
        type=float,
        default=d["budget_s"],
        help=f"time budget in seconds, everything included (default "
        f"{d['budget_s']:g}); each candidate first compiles its training step "
        "(30-90 s on a 2-core CPU), so small budgets fit few candidates",
    )
    p.add_argument(
        "--steps",
        nargs="+",
        type=float,
        metavar="S",
        default=list(search.DEFAULT_STEPS),
        help="values for beta and gamma; alpha = 2 / (beta^2 gamma^2) (default "
        f"{' '.join(map(str, search.DEFAULT_STEPS))})",
    )
    for flag, kind, what in (
        ("subset", int, "training images"),
        ("test-subset", int, "test images"),
        ("epochs", int, "epochs per candidate"),
        ("batch-size", int, "batch size"),
        ("lr", float, "learning rate (Adam)"),
        ("seed", int, "seed"),
        ("base-resolution", int, "base resolution (default: the data's, ≥ 32)"),
    ):
        default = d.get(flag.replace("-", "_"))
        p.add_argument(
            f"--{flag}",
            type=kind,
            default=default,
            help=what + (f" (default {default:g})" if default is not None else ""),
        )
    p.add_argument(
        "--weights",
        choices=search.WEIGHT_SOURCES,
        default=d["weights"],
        help="where width-1 candidates start (default auto: official B0 if available, "
        "else the offline Lite0; none: all from scratch)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_search)


# ----- the calculator ---------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Compute and print the scaled network; bad values raise a :class:`UserError`."""
    if args.phi is None and not args.variant:
        raise UserError(
            "one of the arguments --phi --variant is required (or a subcommand: sweep, search)"
        )
    bases = {k: getattr(args, k) for k in ("alpha", "beta", "gamma")}
    given = [f"--{k}" for k, v in bases.items() if v is not None]
    implied = None
    if args.variant:
        if given:
            raise UserError(f"{', '.join(given)} can only be used with --phi, not with --variant.")
        net, mult = scaling.official_network(args.variant), None
        implied = scaling.implied_phi(args.variant)
    else:
        defaults = {"alpha": scaling.ALPHA, "beta": scaling.BETA, "gamma": scaling.GAMMA}
        mult = scaling.multipliers(
            args.phi, **{k: v if v is not None else defaults[k] for k, v in bases.items()}
        )
        net = scaling.network(mult.width, mult.depth, mult.resolution)

    if args.json:
        data = net.to_dict()
        if implied:
            data["implied_phi"] = implied.to_dict()
        print(json.dumps(data))
        return 0
    title = f"EfficientNet-{args.variant.upper()}" if args.variant else f"phi = {args.phi:g}"
    print(title)
    if mult:
        print(
            f"  constraint alpha*beta^2*gamma^2 = {mult.constraint:.4f}  "
            f"(FLOPs factor {mult.flops_factor:.3f} vs 2^phi = {mult.ideal_flops_factor:.3f})"
        )
    print(f"  width x{net.width:.4f}   depth x{net.depth:.4f}   resolution {net.resolution}px")
    print(f"  parameters {net.params:,}   FLOPs {net.flops / 1e9:.3f} B multiply-adds")
    if implied:
        print(
            f"  implied phi (formula: {implied.formula}): depth {implied.depth:.2f}, "
            f"width {implied.width:.2f}, resolution {implied.resolution:.2f} "
            f"(ln d / ln {scaling.ALPHA}, ln w / ln {scaling.BETA}, "
            f"ln(r/{scaling.BASE_RESOLUTION}) / ln {scaling.GAMMA})"
        )
    print()
    print(
        f"  {'stage':>5}  {'operator':<24}{'resolution':>12}{'channels':>10}{'layers':>8}"
        f"{'params':>12}{'MFLOPs':>10}"
    )
    for r in net.stages:
        print(
            f"  {r.stage:>5}  {r.operator:<24}{f'{r.resolution}x{r.resolution}':>12}"
            f"{r.channels:>10}{r.layers:>8}{r.params:>12,}{r.flops / 1e6:>10.1f}"
        )
    return 0


# ----- the jobs ---------------------------------------------------------------------------------
def _no_calculator_flags(args: argparse.Namespace, command: str) -> None:
    if args.phi is not None or args.variant:
        raise UserError(
            f"--phi and --variant belong to the calculator, not to 'scaling {command}'."
        )


def run_sweep(args: argparse.Namespace) -> int:
    """``python -m core scaling sweep``: time forward passes and print them."""
    from core.experiments import sweep  # per-command lazy import (see core.cli)

    _no_calculator_flags(args, "sweep")
    job_args: dict = {"batch_sizes": args.batch_sizes, "budget_s": args.budget_s}
    if args.phis is not None:
        job_args["phis"] = args.phis
        job_args.update(
            {
                k: getattr(args, k)
                for k in ("alpha", "beta", "gamma", "base_resolution")
                if getattr(args, k) is not None
            }
        )
    else:
        if any(getattr(args, k) is not None for k in ("alpha", "beta", "gamma", "base_resolution")):
            raise UserError("--alpha, --beta, --gamma and --base-resolution go with --phis.")
        job_args["variants"] = args.variants or list(sweep.DEFAULT_VARIANTS)
    sweep.plan(job_args)  # bad values: exit 2 at once, before any worker starts
    result, status = run_job("sweep", job_args)
    if args.json:
        print(json.dumps(result), flush=True)
        return status
    print(f"Forward pass on {result['device']} (random weights, median of up to 5 passes):")
    batches = result["batch_sizes"]
    print(
        f"  {'network':<12}{'px':>5}{'params':>13}{'GFLOPs':>9}"
        + "".join(f"{f'ms/img @{b}':>12}" for b in batches)
    )
    for p in result["points"]:
        print(
            f"  {p['label']:<12}{p['resolution']:>5}{p['params']:>13,}{p['flops'] / 1e9:>9.3f}"
            + "".join(f"{p['ms_per_image'].get(str(b), float('nan')):>12.2f}" for b in batches)
        )
    if result["skipped"]:
        why = "stopped" if result["stopped"] else f"budget of {result['budget_s']:g} s spent"
        print(f"  skipped ({why}): {', '.join(result['skipped'])}")
    print(f"  wall {result['wall_s']:.1f} s")
    return status


def run_search(args: argparse.Namespace) -> int:
    """``python -m core scaling search``: the α, β, γ search, then its table and noise."""
    from core.experiments import search  # per-command lazy import (see core.cli)

    _no_calculator_flags(args, "search")
    job_args = {
        k: getattr(args, k)
        for k in (
            "data",
            "budget_s",
            "steps",
            "subset",
            "test_subset",
            "epochs",
            "batch_size",
            "lr",
            "seed",
            "weights",
            "base_resolution",
        )
    }
    search.grid(job_args["steps"])
    search.settings(job_args)  # bad values: exit 2 at once
    data, status = run_job("search", job_args)
    if args.json:
        print(json.dumps(data), flush=True)
        return status
    result = search.SearchResult.from_dict(data)
    setup = result.setup  # None: stopped while the data loaded

    def fact(name: str):
        return "?" if setup is None else getattr(setup, name)

    print(
        f"Search at phi = 1 on {result.data} ({fact('train_images')} train / "
        f"{fact('val_images')} validation / {fact('test_images')} test "
        f"images, base {fact('base_resolution')} px) on {result.device}; "
        f"weights {fact('weights')}"
    )
    print("  ranked on validation; test measured once per candidate, never used to pick")
    print(
        f"  {'#':>2} {'alpha':>6}{'beta':>6}{'gamma':>6}{'a*b2*g2':>9}{'px':>5}{'GFLOPs':>8}"
        f"  {'start':<9}{'status':<9}{'epochs':>7}{'validation':>16}{'test':>8}"
    )
    for c in result.candidates:
        val = (
            f"{100 * c.val_accuracy:.1f} ± {100 * c.stderr:.1f} %"
            if c.val_accuracy is not None
            else "—"
        )
        test = "—" if c.test_accuracy is None else f"{100 * c.test_accuracy:.1f} %"
        epochs = c.outcome.epochs_done if c.outcome else 0
        print(
            f"  {c.index + 1:>2} {c.alpha:>6.2f}{c.beta:>6.2f}{c.gamma:>6.2f}"
            f"{c.constraint:>9.3f}{c.resolution:>5}{c.flops / 1e9:>8.3f}  "
            f"{c.start:<9}{c.status:<9}{epochs:>7.2f}{val:>16}{test:>8}"
        )
    for r in result.repeats:
        acc = "—" if r.val_accuracy is None else f"{100 * r.val_accuracy:.1f} % validation"
        print(f"  repeat of #{r.candidate + 1} with seed {r.outcome.seed}: {acc}")
    print(f"  {result.noise}")
    print(f"  wall {result.wall_s:.1f} s (budget {result.budget_s:g} s)")
    return status
