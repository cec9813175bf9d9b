"""The incident trail: models, the SQLite store, the durable revoke queue and its revoker.

Import the submodules directly (``scanner.incidents.store`` needs sqlite-utils and
``scanner.incidents.revoker`` needs aiohttp, which the scan path must not import).
"""
