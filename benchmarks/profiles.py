"""The budget profiles' names, in a module that imports nothing (the CLI parses ``--profile``
without importing the tasks, hence torch); each task says what a profile means for it
(:meth:`benchmarks.tasks.base.Task.protocol`)."""

PROFILES = ("quick", "default", "full")
