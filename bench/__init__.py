"""Benchmarks of what regionedit costs beyond the models it calls.

Run ``python -m bench`` (every section) or ``python -m bench --quick`` from the repository root;
bench/README.md says what each section measures.
"""
