"""Shim for tools and instructions that run setup.py (``python setup.py develop``, as the original's README
says); everything is declared in pyproject.toml.  ``pip install -e .`` is the usual way (``make setup``)."""
from setuptools import setup

setup()
