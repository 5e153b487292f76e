"""Experiments: the ``regsim`` command line, config-driven runs and reports."""
