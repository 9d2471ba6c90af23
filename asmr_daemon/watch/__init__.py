"""Watch folder: a pure stability tracker, ignore rules, a thin watcher loop, a durable job queue
and the moves to done/ and failed/. ``asmr_daemon.service.daemon`` composes them into the daemon."""
