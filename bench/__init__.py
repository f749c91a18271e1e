"""Benchmarks of regionedit's own cost: everything it does beyond the models it calls.

Run ``python -m bench`` (full figures) or ``python -m bench --quick`` from the repository root;
see bench/README.md for what each figure means and the measured results.
"""
