"""The daemon: ``root.Service`` composes the engine, the editors' endpoint and the watch folder
(``daemon.Daemon``); ``state`` is the state dir (lock, status record), ``logs`` the logging setup."""
