"""``python -m sgmcmc.testing``: run the conformance checks, or tabulate the bias, from the command line."""

from __future__ import annotations

from .core import _SPECS, check_sampler, resolve_sampler
from .statistical import measure_bias

__all__ = ["main"]


def _parse_hyper(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"--hyper expects key=value, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sgmcmc.testing SAMPLER [--lr LR] [--hyper k=v ...] [--checks a,b]``: run the checks.

    ``python -m sgmcmc.testing --bias SAMPLER [SAMPLER ...] --lrs 0.2,0.4 [--hyper k=v]
    [--grad-noise 0.5] [--temperature T]``: print the error table of :func:`measure_bias`.

    ``python -m sgmcmc.testing SAMPLER --estimator control_variates``: the sampler reading a gradient
    estimator on a finite-sum problem (:func:`sgmcmc.testing.estimators.check_estimator`).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sgmcmc.testing", description=main.__doc__)
    parser.add_argument("samplers", nargs="+", help="registered names, entry points or module:Class")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--hyper", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--checks", default=None, help="comma-separated check names (default: all that apply)")
    parser.add_argument("--bias", action="store_true", help="print errors per step size instead of checking")
    parser.add_argument("--lrs", default="0.2,0.4,0.8,1.6")
    parser.add_argument("--grad-noise", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--estimator", default=None, choices=("control_variates",),
                        help="check the sampler reading this gradient estimator on a finite-sum problem "
                             "(estimator_noise, estimator_stationary, estimator_tempered)")
    args = parser.parse_args(argv)
    hyper = _parse_hyper(args.hyper)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks is not None else None
    unknown = [c for c in checks or () if c not in _SPECS]
    if checks is not None and (unknown or not checks):
        parser.error(f"--checks {args.checks!r}: unknown check(s) {', '.join(unknown) or '(none named)'}; "
                     f"valid: {', '.join(_SPECS)}")
    for name in args.samplers:
        try:
            resolve_sampler(name)
        except (LookupError, ImportError, TypeError, ValueError) as exc:  # UnknownSamplerError is a ValueError
            parser.error(str(exc))
    if args.bias:
        lrs = [float(x) for x in args.lrs.split(",")]
        print("| sampler | lr | max abs var err | mean var err | stiff-direction var err (se) "
              "| max abs mean err (sd) | Mahalanobis mean err | min ESS |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.samplers:
            for row in measure_bias(name, lrs, temperature=args.temperature, grad_noise=args.grad_noise, **hyper):
                if "diverged" in row:
                    print(f"| {name} | {row['lr']:g} | diverged | | | | | |")
                    continue
                print(f"| {name} | {row['lr']:g} | {row['max_abs_var_err']:.3f} | {row['mean_var_err']:+.3f} | "
                      f"{row['stiff_var_err']:+.3f} ({row['stiff_var_se']:.3f}) | {row['max_abs_mean_err_sd']:.3f} | "
                      f"{row['mahalanobis_mean_err']:.3f} | {row['ess_mean_min']:.0f} |")
        return 0
    status = 0
    if args.estimator is not None:
        from .estimators import check_estimator

        if args.checks is not None or args.bias:
            parser.error("--estimator runs the estimator checks (estimator_noise, estimator_stationary, "
                         "estimator_tempered); it does not combine with --checks or --bias")

        for name in args.samplers:
            results = check_estimator(name, args.estimator, lr=args.lr, **hyper)
            print(f"== {name} + {args.estimator}")
            for r in results:
                print(f"  {r}")
            status |= any(r.status == "failed" for r in results)
        return int(status)
    for name in args.samplers:
        results = check_sampler(name, lr=args.lr, checks=checks, raise_on_failure=False, **hyper)
        print(f"== {name}")
        for r in results:
            print(f"  {r}")
        status |= any(r.status == "failed" for r in results)
    return int(status)
