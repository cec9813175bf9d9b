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
#: Nested base64 (base64 of base64) is looked for in the first DEEP_LIMIT bytes of an input.
DEEP_LIMIT = 8 << 20
#: A streaming caller must keep this many bytes after a region it asks to scan.
LOOKAHEAD = MAX_RUN + DECODE_SPAN + 256
LOOKBEHIND = CONTEXT
