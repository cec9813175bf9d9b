"""Everything cendis-scan does with git, one module per concern, in data-flow order.

Reading git (a source: never imports the detector):

- :mod:`.proc`: the environment every git gets, git's error in one line, and a
  ``posix_spawn`` runner. Standard library only: the pre-commit hook's fast path
  (:mod:`scanner.cli.fast_staged`) imports it.
- :mod:`.batch`: the one parser of ``git cat-file --batch`` output, in memory or
  streamed in regions. Standard library only, for the same reason.
- :mod:`.plumbing`: every other git subprocess (run, spawn, finish) and the small
  questions asked of a repository (its kind, refs, trees, ignore rules).
- :mod:`.commits`: commits as raw tree diffs (``log --raw -z``, ``diff-index``).
- :mod:`.objects`: object ids, sizes, types and tags; a ``cat-file`` kept open.

From objects to findings (imports the engine):

- :mod:`.scanning`: objects read by :mod:`.objects`, scanned by
  :mod:`scanner.engine.objects`, once each, in worker processes when there are many.
- :mod:`.history`: which change wrote each object that holds a token (the walk).
- :mod:`.attribution`: one finding per token, at the change that introduced it.
- :mod:`.scan`: the entry points (staged, revs, history) and :mod:`.protocol`, the
  pre-push hook's input.
"""
