"""Voilà's configuration for ``workbench serve``: the folder holding ``voila.py``.

``workbench.serve.voila_command`` puts this folder first on Voilà's config path; nothing here is
meant to be imported.
"""
