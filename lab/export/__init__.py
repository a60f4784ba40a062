"""``subchar export``: a run as one self-contained ``submission.py`` for the benchmark harness.

``run`` reads a run folder, ``parts`` lists what a submission carries, ``inline`` copies sources, ``templates``
are the hand-written parts, ``checks`` verifies the generated file and ``build`` puts it together.
"""

from lab.export.build import build_submission, export_run
from lab.export.checks import check_submission, undefined_names, unguarded_imports
from lab.export.inline import Part
from lab.export.run import RunFacts, read_run

__all__ = ["Part", "RunFacts", "build_submission", "check_submission", "export_run", "read_run",
           "undefined_names", "unguarded_imports"]
