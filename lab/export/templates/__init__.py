"""The hand-written parts of a submission, as real modules: importable and linted like the rest of the package.

Their imports of this project only name what the earlier parts of a submission define; ``lab.export.inline``
drops those imports when it copies a template into the file. ``run`` holds stand-ins for the run's values.
"""
