"""Benchmarks of the transcription pipeline (not run as tests): ``.venv/bin/python bench/run.py``."""
