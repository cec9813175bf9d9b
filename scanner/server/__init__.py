"""The partner receiver: verify signed leak reports, record them, hand tokens to the revoker.

Nothing here is imported by ``import scanner`` or by the scan path: aiohttp and
cryptography cost ~0.4 s of start-up that a pre-commit hook cannot pay.

Layout (the PyPI warehouse split): :mod:`.config` (TOML), :mod:`.keys` (the partners'
public-key cache), :mod:`.verify` (ECDSA and Standard Webhooks checks), :mod:`.reports`
(records → store items and feedback), :mod:`.views` (thin aiohttp handlers),
:mod:`.app` (the factory), :mod:`.metrics`, :mod:`.logs`.
"""
