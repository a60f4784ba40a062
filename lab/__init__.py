"""The application layer: grid cells, comparisons, reports, exports, the Modal backend and the ``subchar`` CLI.

It ties the libraries together (``subchar``, ``tokenizers_local``, ``zoo``) on top of the benchmark harness
(``eval``); nothing below imports it (``tests/test_layers.py`` checks the layers with import-linter).
"""
