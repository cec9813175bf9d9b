"""How far the engine reads around a place: the window sizes shared by the detector
and the code that feeds it (regions, streams), kept apart so that neither has to
import the other for them."""

from __future__ import annotations

import os

from scanner import token as tk

#: The longest body run read after a prefix; longer runs are reported as possible.
MAX_RUN = tk.MAX_RUN
#: Bytes of line context looked at for markers and variable names.
CONTEXT = 4096
#: How far base64 is decoded after a hit (characters).
DECODE_SPAN = 1024
#: Layers taken off one input (base64, gzip, escapes, a zip...) before the rest is
#: scanned as it is: the one depth limit of every decoder.
MAX_LAYERS = 4
#: Layers a seed literal is computed through (see :mod:`scanner.engine.layers`). A
#: fourth layer is still taken off where a seed of the three outer ones is found.
SEED_DEPTH = 3
#: How far around a seed a layer's encoded text is read (a Helm release's base64).
LAYER_SPAN = 4 << 20
#: Every seed of every layer is looked for in the first DEEP_LIMIT bytes of an input
#: (``--decode-window``; ``0``: everywhere); past it, the prefix, its base64 forms and
#: a gzipped blob's (``H4sI``, in base64 again, its magic). Measured on a clean 1 GB
#: log: Hyperscan finds the ~1,500 seeds at 0.5 s/GB/core against 0.15 s for those few,
#: a 1.7x slower scan end to end (bench/layers.py); so the window stays, as an option.
DEEP_LIMIT = 8 << 20
#: ``--decode-window all``: the deep plan everywhere.
EVERYWHERE = 1 << 62
#: The environment variable that carries ``--decode-window`` to worker processes.
WINDOW_ENV = "CENDIS_SCAN_DECODE_WINDOW"


def decode_window() -> int:
    """The decode window asked for (``--decode-window``), else DEEP_LIMIT."""
    text = os.environ.get(WINDOW_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else DEEP_LIMIT
#: The longest text a confirmed token becomes under MAX_LAYERS layers of the widest
#: escape (6 characters per byte, ``&#101;``/``\u0063``): 47 * 6**4 bytes, rounded up.
ENCODED_TOKEN = 64 << 10
#: A streaming caller must keep this many bytes after a region it asks to scan: a seed
#: found just before a chunk's end has the whole encoded token after it.
LOOKAHEAD = max(MAX_RUN + DECODE_SPAN + 256, ENCODED_TOKEN)
LOOKBEHIND = CONTEXT
