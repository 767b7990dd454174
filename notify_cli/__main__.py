from notify_cli.main import main

raise SystemExit(main())
