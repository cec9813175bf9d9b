"""How far the engine reads around a place: the window sizes shared by the detector
and the code that feeds it (regions, streams), kept apart so that neither has to
import the other for them."""

from __future__ import annotations

from scanner import token as tk
from scanner.engine.literals import SEED_DEPTH  # noqa: F401  (re-exported)
from scanner.result import DECODE_WINDOW, EVERYWHERE  # noqa: F401  (re-exported)

#: The longest body run read after a prefix; longer runs are reported as possible.
MAX_RUN = tk.MAX_RUN
#: Bytes of line context looked at for markers and variable names.
CONTEXT = 4096
#: How far base64 is decoded after a hit (characters).
DECODE_SPAN = 1024
#: Layers taken off one input (base64, gzip, escapes, a zip...) before the rest is
#: scanned as it is: the one depth limit of every decoder.
MAX_LAYERS = 4
#: SEED_DEPTH (layers a seed literal is computed through) lives with the seeds, in
#: :mod:`scanner.engine.literals` (standard library only), and is re-exported here.
#: How far around a seed a layer's encoded text is read (a Helm release's base64);
#: a gzip or zlib layer is inflated past it, as a stream (:class:`layers.Inflated`).
LAYER_SPAN = 4 << 20
#: Every seed of every layer is looked for in the first DEEP_LIMIT bytes of an input
#: (``ScanOptions.decode_window``, ``--decode-window``); past it, the prefix, its base64
#: forms and a gzipped blob's (``H4sI``, in base64 again, its magic). Measured (issue
#: 20): Hyperscan picks its Teddy matcher for those ~7 literals (7.1-7.4 GB/s per core
#: on a clean log) and FDR for any set of more than ~10 seed-like literals: all ~1,400
#: seeds at 2.1-2.4 GB/s, the 158 of one layer at most 3.2, even 2 hex seeds halve
#: Teddy's speed. Searched everywhere, the seeds cost a clean 1 GB log +0.23 s CPU
#: (0.42 -> 0.65 s, +55 %); within the first 8 MiB, ~3 ms. So the window stays, as an
#: option (``all``: everywhere).
DEEP_LIMIT = DECODE_WINDOW  # the default of ScanOptions.decode_window
#: ``EVERYWHERE`` (``--decode-window all``): the deep plan everywhere.
#: The longest text a confirmed token becomes under MAX_LAYERS layers of the widest
#: escape (6 characters per byte, ``&#101;``/``\u0063``): 47 * 6**4 bytes, rounded up.
ENCODED_TOKEN = 64 << 10
#: A streaming caller must keep this many bytes after a region it asks to scan: a seed
#: found just before a chunk's end has the whole encoded token after it.
LOOKAHEAD = max(MAX_RUN + DECODE_SPAN + 256, ENCODED_TOKEN)
LOOKBEHIND = CONTEXT
