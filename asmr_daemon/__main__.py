from asmr_daemon.cli import main

raise SystemExit(main())
