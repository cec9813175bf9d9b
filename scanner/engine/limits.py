"""How far the engine reads around a place: the window sizes shared by the detector
and the code that feeds it (regions, streams), kept apart so that neither has to
import the other for them."""

from __future__ import annotations

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
#: Where every seed is looked for, by default: everywhere (``--decode-window`` narrows
#: it to the first bytes of an input; past it, only the prefix and its base64 forms).
DEEP_LIMIT = 1 << 62
#: The longest text a confirmed token becomes under MAX_LAYERS layers of the widest
#: escape (6 characters per byte, ``&#101;``/``\u0063``): 47 * 6**4 bytes, rounded up.
ENCODED_TOKEN = 64 << 10
#: A streaming caller must keep this many bytes after a region it asks to scan: a seed
#: found just before a chunk's end has the whole encoded token after it.
LOOKAHEAD = max(MAX_RUN + DECODE_SPAN + 256, ENCODED_TOKEN)
LOOKBEHIND = CONTEXT
