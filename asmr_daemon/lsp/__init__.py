"""Language server: one pygls session per editor connection, all sharing the daemon's engine.

* ``server``    -- builds a ``LanguageServer`` for one connection (thin feature handlers);
* ``convert``   -- documents, positions and edits <-> LSP types (pure functions);
* ``translate`` -- the bridge from LSP requests to the engine (interactive priority, caching);
* ``endpoint``  -- the daemon's listener: Unix socket and optional TCP, many clients at once;
* ``bridge``    -- ``asmr-daemon lsp``: stdio <-> the daemon's socket, or ``--standalone``.

Nothing here builds a server at import time; importing the package is cheap.
"""
