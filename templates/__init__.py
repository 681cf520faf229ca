"""fahr's built-in ``fahr init`` templates (cookiecutter), shipped as package data.

In the source tree they live in ``templates/``; installed, they are ``fahr_core/templates/``
(pyproject.toml maps the one onto the other). Each folder holds a ``cookiecutter.json``.
"""
