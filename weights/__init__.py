"""framefill's shipped weights, as package data: this folder installs as ``framefill.weights``.

``framefill.models.default_weights`` finds the files here through ``importlib.resources`` (see its docstring);
README.md says how each was trained and what it scores.
"""
