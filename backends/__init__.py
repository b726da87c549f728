"""One module per framework, shipped as ``d2lconv.backends.<name>``; each only translates.

A module here is imported the first time its backend is used, never by ``import d2lconv``.
"""
