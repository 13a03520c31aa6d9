"""Samplers of other SG-MCMC libraries behind this library's interface, to compare against.

Each adapter module wraps one library's own update functions in :class:`sgmcmc.Sampler`
subclasses, with the library's units translated to this library's (docs/contract.md), so a peer
sampler runs wherever a built-in does: ``python -m sgmcmc.testing``, ``python -m benchmarks``,
and any training loop. See docs/peers.md.

- :mod:`benchmarks.peers.posteriors`: normal-computing's ``posteriors`` (``pip install
  'sgmcmc-bench[peers]'``), registered as ``posteriors-sgld``, ``posteriors-sghmc``,
  ``posteriors-sgnht``, ``posteriors-baoa`` and ``posteriors-sglrw``.

Every peer class carries two class attributes: ``mirrors``, the built-in sampler whose tuned
hyperparameters it runs at (its own hyperparameters have the same names and units), and ``peer``,
the library and version it runs.
"""
